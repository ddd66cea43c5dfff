// The home page: start, stop and delete my servers (named ones included), add a named
// server, share my servers with users or groups, and list what others share with me.
"use strict";
(() => {
  const me = "/users" + hub.path(hub.user);
  const serverPath = (name) => (name ? me + "/servers" + hub.path(name) : me + "/server");

  // Reload once the server has left a pending phase (or after 2 minutes).
  async function reloadWhenSettled(name) {
    for (let i = 0; i < 240; i++) {
      const user = await hub.api("GET", me);
      const server = (user.servers || {})[name];
      if (!server || !server.pending) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    location.reload();
  }

  document.querySelectorAll("button[data-action]").forEach((button) => {
    const name = button.dataset.server || "";
    const label = name || "your default server";
    button.addEventListener("click", () => hub.act(button, async () => {
      if (button.dataset.action === "stop") {
        button.textContent = "Stopping…";
        await hub.api("DELETE", serverPath(name));
        await reloadWhenSettled(name);
      } else if (button.dataset.action === "start") {
        // The spawn page: the options form when there are profiles, then progress.
        location.href = hub.base + "spawn" + hub.path(hub.user, name);
      } else if (button.dataset.action === "delete") {
        if (!(await hub.confirm(`Delete the server ${label}? Its files in your home stay.`))) return;
        await hub.api("DELETE", serverPath(name), { remove: true });
        location.reload();
      }
    }));
  });

  const newServer = document.getElementById("new-server");
  if (newServer) {
    newServer.addEventListener("submit", (e) => {
      e.preventDefault();
      const name = document.getElementById("new-server-name").value.trim();
      location.href = hub.base + "spawn" + hub.path(hub.user, name);
    });
  }

  const sharesList = document.getElementById("shares");
  async function loadShares() {
    const data = await hub.api("GET", "/shares" + hub.path(hub.user));
    sharesList.replaceChildren();
    for (const share of data.items || []) {
      const whom = share.user ? { user: share.user.name } : { group: share.group.name };
      const who = share.user ? `user ${share.user.name}` : `group ${share.group.name}`;
      const server = share.server.name || "default server";
      sharesList.append(hub.el("li", {},
        `Your ${server} is shared with ${who}. `,
        hub.el("button", {
          type: "button", class: "btn btn-plain btn-small", "aria-label": `Stop sharing with ${who}`,
          onclick: (e) => hub.act(e.currentTarget, async () => {
            await hub.api("PATCH", "/shares" + hub.path(hub.user) + "/" + encodeURIComponent(share.server.name), whom);
            await loadShares();
          }),
        }, "Stop sharing")));
    }
    if (!sharesList.children.length) sharesList.append(hub.el("li", { class: "muted" }, "You share no server."));
  }

  const sharedList = document.getElementById("shared-with-me");
  async function loadShared() {
    const data = await hub.api("GET", me + "/shared");
    sharedList.replaceChildren();
    for (const share of data.items || []) {
      const s = share.server;
      const label = `${s.user.name}'s ${s.name ? "server " + s.name : "server"}`;
      sharedList.append(hub.el("li", {},
        s.ready ? hub.el("a", { href: s.url, class: "shared-server" }, `Open ${label}`) : `${label} (not running)`));
    }
    if (!sharedList.children.length) sharedList.append(hub.el("li", { class: "muted" }, "Nothing is shared with you."));
  }

  const shareServer = () => {
    const select = document.getElementById("share-server");
    return select ? select.value : "";
  };
  const shareForm = document.getElementById("share-form");
  if (shareForm) shareForm.addEventListener("submit", (e) => {
    e.preventDefault();
    hub.act(document.getElementById("share-submit"), async () => {
      const kind = document.getElementById("share-kind").value;
      const name = document.getElementById("share-name").value.trim();
      await hub.api("POST", "/shares" + hub.path(hub.user) + "/" + encodeURIComponent(shareServer()), { [kind]: name });
      hub.status(`Shared with ${kind} ${name}.`);
      document.getElementById("share-name").value = "";
      await loadShares();
    });
  });
  if (shareForm) document.getElementById("share-code").addEventListener("click", (e) => hub.act(e.currentTarget, async () => {
    const code = await hub.api("POST", "/share-codes" + hub.path(hub.user) + "/" + encodeURIComponent(shareServer()), {});
    const link = document.getElementById("share-link-url");
    link.href = code.accept_url;
    link.textContent = new URL(code.accept_url, location.href).href;
    document.getElementById("share-link").hidden = false;
  }));

  Promise.all([shareForm ? loadShares() : null, loadShared()]).catch((error) => hub.status(error.message, true));
})();
