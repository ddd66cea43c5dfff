// The token page: create (note, expiry, scopes), list and revoke this user's API tokens.
"use strict";
(() => {
  const tbody = document.querySelector("#tokens tbody");
  const base = "/users" + hub.path(hub.user) + "/tokens";

  async function load() {
    const data = await hub.api("GET", base);
    tbody.replaceChildren();
    const tokens = data.api_tokens || [];
    if (!tokens.length) {
      tbody.append(hub.el("tr", {}, hub.el("td", { colspan: 6 }, "You have no tokens.")));
    }
    for (const t of tokens) {
      const label = t.note || (t.oauth_client ? `Used by ${t.oauth_client}` : "(no note)");
      const revoke = hub.el("button", {
        type: "button", class: "btn btn-danger btn-small", "aria-label": `Revoke ${label}`,
        onclick: (e) => hub.act(e.currentTarget, async () => {
          if (!(await hub.confirm(`Revoke the token "${label}"? Programs using it stop working.`))) return;
          await hub.api("DELETE", base + hub.path(t.id));
          hub.status(`Revoked "${label}".`);
          await load();
        }),
      }, "Revoke");
      tbody.append(hub.el("tr", { dataset: { token: t.id } },
        hub.el("td", { "data-label": "Note" }, label),
        hub.el("td", { "data-label": "Permissions" }, (t.scopes || []).join(" ")),
        hub.el("td", { "data-label": "Last used" }, hub.when(t.last_activity)),
        hub.el("td", { "data-label": "Created" }, hub.when(t.created)),
        hub.el("td", { "data-label": "Expires" }, t.expires_at ? hub.when(t.expires_at) : "never"),
        hub.el("td", {}, revoke)));
    }
  }

  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    hub.act(document.getElementById("token-create"), async () => {
      const body = { note: document.getElementById("token-note").value.trim() || "Requested via token page" };
      const expires = document.getElementById("token-expires").value;
      if (expires) body.expires_in = Number(expires);
      const scopes = document.getElementById("token-scopes").value.split(/\s+/).filter(Boolean);
      if (scopes.length) body.scopes = scopes;
      const token = await hub.api("POST", base, body);
      document.getElementById("token-secret").textContent = token.token;
      document.getElementById("token-new").hidden = false;
      hub.status("");
      document.getElementById("token-form").reset();
      await load();
    });
  });

  load().catch((error) => hub.status(error.message, true));
})();
