// Shared by the pages: REST API calls with the login cookie and the XSRF token, small DOM helpers.
"use strict";
const hub = {
  xsrf: document.body.dataset.xsrf || "",
  user: document.body.dataset.user || "",
  // The hub's own pages: `/hub/`, or under `hub.baseUrl`.
  base: document.body.dataset.base || "/hub/",

  async api(method, path, body, accept) {
    const headers = { "X-XSRFToken": hub.xsrf, Accept: accept || "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(hub.base + "api" + path, init);
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = text; }
    }
    if (!response.ok) {
      const error = new Error((data && data.message) || `${response.status} ${response.statusText}`);
      error.status = response.status;
      if (data && data.problems) error.problems = data.problems;
      throw error;
    }
    return data;
  },

  path(...parts) {
    return parts.map((p) => "/" + encodeURIComponent(p)).join("");
  },

  // el("a", {href: "/x", class: "btn"}, "text", child...)
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  },

  when(iso) {
    if (!iso) return "never";
    const seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (seconds < 0) {
      const ahead = -seconds;
      if (ahead < 3600) return `in ${Math.round(ahead / 60)} minutes`;
      if (ahead < 172800) return `in ${Math.round(ahead / 3600)} hours`;
      return `in ${Math.round(ahead / 86400)} days`;
    }
    if (seconds < 60) return "just now";
    if (seconds < 3600) return `${Math.round(seconds / 60)} minutes ago`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} hours ago`;
    return `${Math.round(seconds / 86400)} days ago`;
  },

  status(message, isError) {
    const box = document.getElementById("status");
    if (!box) return;
    box.textContent = message;
    box.className = message ? (isError ? "error" : "notice") : "";
    box.setAttribute("role", isError ? "alert" : "status");
  },

  // Run an action from a button: disabled while it runs, errors shown in #status.
  async act(button, action) {
    if (button) button.disabled = true;
    try {
      await action();
    } catch (error) {
      hub.status(error.message, true);
    } finally {
      if (button) button.disabled = false;
    }
  },

  // A yes/no question in the page's <dialog id="confirm">, or confirm() without one.
  confirm(text) {
    const dialog = document.getElementById("confirm");
    if (!dialog) return Promise.resolve(window.confirm(text));
    document.getElementById("confirm-text").textContent = text;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  },
};
