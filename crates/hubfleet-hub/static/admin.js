// The admin page. Everything goes through the REST API with the signed-in person's own
// scopes, so an admin limited to a group (`admin:users!group=x`) sees and manages only that.
"use strict";
(() => {
  const view = { offset: 0, limit: 50, sort: "name", descending: false, filter: "", state: "", total: 0 };
  const tbody = document.querySelector("#users tbody");
  const userPath = (name) => "/users" + hub.path(name);
  const serverPath = (user, server) =>
    server ? userPath(user) + "/servers" + hub.path(server) : userPath(user) + "/server";
  const serverUrl = (user, server) => hub.base.replace(/hub\/$/, "user") + hub.path(user) + "/" + (server ? encodeURIComponent(server) + "/" : "");
  // The caller's scopes that change things (`"all"` or filters by kind): only buttons they may
  // use are shown. The API checks again.
  const held = JSON.parse(document.getElementById("admin").dataset.scopes || "{}");
  const covers = (base, user) => {
    const f = held[base];
    if (!f) return false;
    if (f === "all") return true;
    return (f.user || []).includes(user.name) || (f.group || []).some((g) => (user.groups || []).includes(g));
  };
  const coversGroup = (base, group) => {
    const f = held[base];
    return f === "all" || (!!f && (f.group || []).includes(group));
  };

  // ---- tabs ----
  const tabs = [...document.querySelectorAll("[role=tab]")];
  function select(tab) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", on);
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    }
    hub.status("");
    if (tab.id === "tab-groups") loadGroups().catch(showError);
    if (tab.id === "tab-hub") loadHub().catch(showError);
  }
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus();
      select(next);
    });
  });
  const showError = (error) => hub.status(error.message, true);

  // ---- users ----
  async function loadUsers() {
    const query = new URLSearchParams({
      offset: view.offset, limit: view.limit,
      sort: (view.descending ? "-" : "") + view.sort, include_stopped_servers: "1",
    });
    if (view.filter) query.set("name_filter", view.filter);
    if (view.state) query.set("state", view.state);
    const data = await hub.api("GET", "/users?" + query, undefined, "application/jupyterhub-pagination+json");
    view.total = data._pagination.total;
    renderUsers(data.items);
    const first = view.total ? view.offset + 1 : 0;
    const last = Math.min(view.offset + view.limit, view.total);
    document.getElementById("page-info").textContent = `${first}–${last} of ${view.total} users`;
    document.getElementById("prev").disabled = view.offset === 0;
    document.getElementById("next").disabled = last >= view.total;
    // Keep pending servers up to date.
    clearTimeout(loadUsers.timer);
    if (data.items.some((u) => Object.values(u.servers || {}).some((s) => s.pending))) {
      loadUsers.timer = setTimeout(() => loadUsers().catch(showError), 1000);
    }
  }

  function serverBadge(server) {
    if (server.ready) return hub.el("span", { class: "badge ready" }, "running");
    if (server.pending) return hub.el("span", { class: "badge pending" }, server.pending === "spawn" ? "starting" : "stopping");
    return hub.el("span", { class: "badge" }, "stopped");
  }

  function button(label, attrs, action) {
    return hub.el("button", {
      type: "button", class: "btn btn-small " + (attrs.kind || "btn-plain"), "aria-label": attrs.label,
      dataset: attrs.dataset, onclick: (e) => hub.act(e.currentTarget, action),
    }, label);
  }

  function serverRow(user, server) {
    const name = server.name || "";
    const title = name ? name : "default";
    const who = `${user.name}'s ${name ? "server " + name : "server"}`;
    const actions = [];
    if (server.ready) {
      actions.push(hub.el("a", { class: "btn btn-small btn-primary", href: server.url || serverUrl(user.name, name), "aria-label": `Open ${who}`, dataset: { action: "open", user: user.name } }, "Open"));
    }
    const mayRun = covers("servers", user);
    if (!mayRun) {
      // Nothing to start or stop here.
    } else if (server.ready || server.pending === "spawn") {
      actions.push(button("Stop", { label: `Stop ${who}`, kind: "btn-danger", dataset: { action: "stop", user: user.name } }, async () => {
        await hub.api("DELETE", serverPath(user.name, name));
        await loadUsers();
      }));
    } else if (!server.pending) {
      actions.push(button("Start", { label: `Start ${who}`, kind: "btn-primary", dataset: { action: "start", user: user.name } }, async () => {
        await hub.api("POST", serverPath(user.name, name), {});
        await loadUsers();
      }));
      // As upstream's admin: the spawn page, to start it with chosen options.
      actions.push(hub.el("a", { class: "btn btn-small btn-plain", href: hub.base + "spawn" + hub.path(user.name, ...(name ? [name] : [])), "aria-label": `Spawn page of ${who}` }, "Spawn page"));
    }
    actions.push(hub.el("a", { class: "btn btn-small btn-plain", href: hub.base + "admin/log/" + encodeURIComponent(user.name) + (name ? "/" + encodeURIComponent(name) : ""), "aria-label": `Log of ${who}` }, "Log"));
    actions.push(button("Details", { label: `Details of ${who}` }, async () => {
      const options = server.user_options || {};
      const profile = (server.state && server.state.profile) || null;
      document.getElementById("details-title").textContent = who;
      document.getElementById("details-body").textContent = JSON.stringify({
        profile: options.profile || (profile && profile.slug) || "(default)",
        user_options: options, started: server.started, last_activity: server.last_activity,
        url: server.url, resolved_profile: profile,
        memory_kills: (server.state && server.state.oom_kills) || 0,
        last_memory_kill: (server.state && server.state.last_oom_kill) || null,
      }, null, 2);
      document.getElementById("details").showModal();
    }));
    return hub.el("div", { class: "server" }, hub.el("strong", {}, title), serverBadge(server),
      options(server), memoryKills(server), hub.el("span", { class: "actions" }, actions));
  }

  // Processes (kernels) of a running server killed at its memory limit.
  function memoryKills(server) {
    const kills = server.state && server.state.oom_kills;
    if (!kills || !server.ready) return null;
    const last = server.state.last_oom_kill || {};
    return hub.el("span", { class: "badge pending", title: `${last.message || ""}, last ${hub.when(last.at)}` },
      kills === 1 ? "1 process killed: memory limit" : `${kills} processes killed: memory limit`);
  }

  function options(server) {
    const profile = server.user_options && server.user_options.profile;
    return profile ? hub.el("span", { class: "muted" }, `profile ${profile}`) : null;
  }

  function renderUsers(users) {
    tbody.replaceChildren();
    if (!users.length) {
      tbody.append(hub.el("tr", {}, hub.el("td", { colspan: 5 }, view.filter ? `No user matches "${view.filter}".` : "No users.")));
    }
    for (const user of users) {
      const servers = Object.values(user.servers || {});
      if (!servers.some((s) => s.name === "")) servers.unshift({ name: "", stopped: true });
      servers.sort((a, b) => a.name.localeCompare(b.name));
      const userActions = hub.el("span", { class: "actions" },
        covers("admin:users", user) ? button("Edit", { label: `Edit ${user.name}` }, async () => editUser(user)) : null,
        covers("delete:users", user) ? button("Delete", { label: `Delete ${user.name}`, kind: "btn-danger" }, async () => {
          if (!(await hub.confirm(`Delete the user ${user.name}? Their servers are stopped; their files stay.`))) return;
          await hub.api("DELETE", userPath(user.name));
          hub.status(`Deleted ${user.name}.`);
          await loadUsers();
        }) : null);
      tbody.append(hub.el("tr", { dataset: { user: user.name } },
        hub.el("td", { "data-label": "Name" }, hub.el("strong", {}, user.name)),
        hub.el("td", { "data-label": "Admin" }, user.admin ? "admin" : "—"),
        hub.el("td", { "data-label": "Last activity" }, hub.when(user.last_activity)),
        hub.el("td", { "data-label": "Servers" }, servers.map((s) => serverRow(user, s))),
        hub.el("td", { "data-label": "User" }, userActions)));
    }
  }

  // Search as you type, a quarter of a second after the last key.
  let typing;
  document.getElementById("search").addEventListener("input", (e) => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      view.filter = e.target.value.trim();
      view.offset = 0;
      loadUsers().catch(showError);
    }, 250);
  });
  document.getElementById("search-form").addEventListener("submit", (e) => e.preventDefault());
  document.getElementById("state-filter").addEventListener("change", (e) => {
    view.state = e.target.value;
    view.offset = 0;
    loadUsers().catch(showError);
  });
  document.querySelectorAll("button.sort").forEach((b) => b.addEventListener("click", () => {
    if (view.sort === b.dataset.sort) view.descending = !view.descending;
    else { view.sort = b.dataset.sort; view.descending = b.dataset.sort === "last_activity"; }
    for (const other of document.querySelectorAll("button.sort")) {
      const on = other.dataset.sort === view.sort;
      other.closest("th").setAttribute("aria-sort", on ? (view.descending ? "descending" : "ascending") : "none");
      other.querySelector("span").textContent = on ? (view.descending ? "▼" : "▲") : "";
    }
    view.offset = 0;
    loadUsers().catch(showError);
  }));
  document.getElementById("prev").addEventListener("click", () => {
    view.offset = Math.max(0, view.offset - view.limit);
    loadUsers().catch(showError);
  });
  document.getElementById("next").addEventListener("click", () => {
    view.offset += view.limit;
    loadUsers().catch(showError);
  });
  document.getElementById("page-size").addEventListener("change", (e) => {
    view.limit = Number(e.target.value);
    view.offset = 0;
    loadUsers().catch(showError);
  });

  // Add users: one name per line, optionally as admins.
  const addDialog = document.getElementById("add-users");
  document.getElementById("add-users-open")?.addEventListener("click", () => {
    document.getElementById("add-users-form").reset();
    addDialog.showModal();
  });
  addDialog.addEventListener("close", () => {
    if (addDialog.returnValue !== "ok") return;
    const usernames = document.getElementById("add-users-names").value.split(/[\s,]+/).filter(Boolean);
    const admin = document.getElementById("add-users-admin").checked;
    hub.act(null, async () => {
      const created = await hub.api("POST", "/users", { usernames, admin });
      hub.status(`Added ${created.map((u) => u.name).join(", ")}.`);
      await loadUsers();
    });
  });

  // Edit: rename and the admin flag.
  const editDialog = document.getElementById("edit-user");
  let editing = null;
  function editUser(user) {
    editing = user;
    document.getElementById("edit-user-name").value = user.name;
    document.getElementById("edit-user-admin").checked = !!user.admin;
    document.getElementById("edit-user-title").textContent = `Edit ${user.name}`;
    editDialog.returnValue = "";
    editDialog.showModal();
  }
  editDialog.addEventListener("close", () => {
    if (editDialog.returnValue !== "ok" || !editing) return;
    const body = {};
    const name = document.getElementById("edit-user-name").value.trim();
    const admin = document.getElementById("edit-user-admin").checked;
    if (name !== editing.name) body.name = name;
    if (admin !== !!editing.admin) body.admin = admin;
    const old = editing.name;
    if (!Object.keys(body).length) return;
    hub.act(null, async () => {
      await hub.api("PATCH", userPath(old), body);
      hub.status(`Saved ${name}.`);
      await loadUsers();
    });
  });

  // Stop all: every active server this admin can see, named ones included.
  document.getElementById("stop-all")?.addEventListener("click", (e) => hub.act(e.currentTarget, async () => {
    if (!(await hub.confirm("Stop every running server? People lose unsaved work."))) return;
    const active = [];
    for (let offset = 0; ; offset += 200) {
      const page = await hub.api("GET", `/users?state=active&limit=200&offset=${offset}`, undefined, "application/jupyterhub-pagination+json");
      active.push(...page.items);
      if (!page._pagination.next) break;
    }
    const stops = [];
    for (const user of active) {
      for (const server of Object.values(user.servers || {})) {
        stops.push(hub.api("DELETE", serverPath(user.name, server.name)));
      }
    }
    const results = await Promise.allSettled(stops);
    const failed = results.filter((r) => r.status === "rejected");
    hub.status(failed.length ? `${failed.length} of ${stops.length} servers could not be stopped: ${failed[0].reason.message}` : `Stopping ${stops.length} servers.`, failed.length > 0);
    await loadUsers();
  }));

  // ---- groups ----
  const groupsBox = document.getElementById("groups");
  async function loadGroups() {
    const groups = await hub.api("GET", "/groups?limit=200");
    groupsBox.replaceChildren();
    if (!groups.length) groupsBox.append(hub.el("p", { class: "muted" }, "No groups yet."));
    for (const group of groups) groupsBox.append(groupCard(group));
  }

  function groupCard(group) {
    const id = "group-" + group.name.replace(/[^A-Za-z0-9_-]/g, "_");
    const groupPath = "/groups" + hub.path(group.name);
    const mayEdit = coversGroup("groups", group.name);
    const members = hub.el("ul", { "aria-label": `Members of ${group.name}` },
      (group.users || []).map((member) => hub.el("li", {}, member, " ",
        mayEdit ? button("Remove", { label: `Remove ${member} from ${group.name}` }, async () => {
          await hub.api("DELETE", groupPath + "/users", { users: [member] });
          await loadGroups();
        }) : null)));
    const memberInput = hub.el("input", { type: "text", id: id + "-member", required: true, autocomplete: "off" });
    const addMember = hub.el("form", { class: "toolbar" },
      hub.el("div", { class: "grow" }, hub.el("label", { for: id + "-member" }, `Add a member to ${group.name}`), memberInput),
      hub.el("button", { type: "submit", class: "btn btn-primary btn-small", "aria-label": `Add member to ${group.name}` }, "Add member"));
    addMember.addEventListener("submit", (e) => {
      e.preventDefault();
      hub.act(addMember.querySelector("button"), async () => {
        const names = memberInput.value.split(/[\s,]+/).filter(Boolean);
        await hub.api("POST", groupPath + "/users", { users: names });
        hub.status(`Added ${names.join(", ")} to ${group.name}.`);
        await loadGroups();
      });
    });
    const props = hub.el("textarea", { id: id + "-props" });
    props.value = JSON.stringify(group.properties || {}, null, 2);
    const propsForm = hub.el("form", {},
      hub.el("label", { for: id + "-props" }, `Properties of ${group.name} (JSON)`), props,
      hub.el("p", {}, hub.el("button", { type: "submit", class: "btn btn-plain btn-small" }, "Save properties")));
    propsForm.addEventListener("submit", (e) => {
      e.preventDefault();
      hub.act(propsForm.querySelector("button"), async () => {
        let value;
        try { value = JSON.parse(props.value); } catch (err) { throw new Error(`Properties are not valid JSON: ${err.message}`); }
        await hub.api("PUT", groupPath + "/properties", value);
        hub.status(`Saved the properties of ${group.name}.`);
      });
    });
    return hub.el("div", { class: "card", dataset: { group: group.name } },
      hub.el("h3", {}, group.name),
      members.children.length ? members : hub.el("p", { class: "muted" }, "No members."),
      mayEdit ? addMember : null, mayEdit ? propsForm : null,
      coversGroup("delete:groups", group.name) ? button("Delete group", { label: `Delete group ${group.name}`, kind: "btn-danger" }, async () => {
        if (!(await hub.confirm(`Delete the group ${group.name}? Its members stay.`))) return;
        await hub.api("DELETE", groupPath);
        await loadGroups();
      }) : null);
  }

  document.getElementById("group-create")?.addEventListener("submit", (e) => {
    e.preventDefault();
    const input = document.getElementById("group-name");
    hub.act(e.target.querySelector("button"), async () => {
      await hub.api("POST", "/groups" + hub.path(input.value.trim()));
      hub.status(`Created the group ${input.value.trim()}.`);
      input.value = "";
      await loadGroups();
    });
  });

  // ---- the hub itself ----
  async function loadHub() {
    const info = hub.el("dl", { id: "hub-info" });
    const root = await hub.api("GET", "/");
    const add = (term, value) => info.append(hub.el("dt", {}, term), hub.el("dd", {}, value));
    add("JupyterHub API version", root.version);
    try {
      const details = await hub.api("GET", "/info");
      add("Spawner", (details.spawner && details.spawner.class) || "?");
      add("Authenticator", (details.authenticator && details.authenticator.class) || "?");
      add("Python", details.python || "—");
    } catch (error) {
      add("Details", `not visible to you (${error.message})`);
    }
    document.getElementById("hub-info").replaceWith(info);
    const routes = document.querySelector("#routes tbody");
    routes.replaceChildren();
    try {
      const table = await hub.api("GET", "/proxy");
      for (const [path, route] of Object.entries(table)) {
        routes.append(hub.el("tr", {}, hub.el("td", {}, path), hub.el("td", {}, route.target), hub.el("td", {}, hub.when(route.last_activity))));
      }
    } catch (error) {
      routes.append(hub.el("tr", {}, hub.el("td", { colspan: 3 }, `Not visible to you (${error.message})`)));
    }
    const services = document.querySelector("#services tbody");
    services.replaceChildren();
    try {
      const list = await hub.api("GET", "/services");
      for (const s of Object.values(list)) {
        services.append(hub.el("tr", {}, hub.el("td", {}, s.name), hub.el("td", {}, s.url || "—"), hub.el("td", {}, s.admin ? "yes" : "no")));
      }
      if (!services.children.length) services.append(hub.el("tr", {}, hub.el("td", { colspan: 3 }, "No services.")));
    } catch (error) {
      services.append(hub.el("tr", {}, hub.el("td", { colspan: 3 }, `Not visible to you (${error.message})`)));
    }
  }

  // ---- environments (profiles and local environments, versioned in the hub) ----
  const envTab = document.getElementById("tab-environments");
  const profileDialog = document.getElementById("profile-dialog");
  let editingProfile = null; // null: a new profile
  const envApi = (kind, name, rest) => "/environments/" + kind + (name === undefined ? "" : hub.path(name)) + (rest || "");
  const text = (v) => (v === undefined || v === null ? "" : String(v));
  const GPU = "nvidia.com/gpu";
  function resources(data) {
    const o = data.kubespawner_override || {};
    const parts = [];
    if (o.image) parts.push(`image ${o.image}`);
    if (o.cpu_guarantee || o.cpu_limit) parts.push(`CPU ${text(o.cpu_guarantee) || "–"}/${text(o.cpu_limit) || "–"}`);
    if (o.mem_guarantee || o.mem_limit) parts.push(`memory ${text(o.mem_guarantee) || "–"}/${text(o.mem_limit) || "–"}`);
    const gpus = (o.extra_resource_limits || {})[GPU];
    if (gpus) parts.push(`${gpus} GPU`);
    return parts.join(", ") || "defaults";
  }
  async function loadEnvironments() {
    const data = await hub.api("GET", "/environments");
    const list = document.getElementById("pf-image-list");
    list.replaceChildren(...data.environments.map((e) => hub.el("option", { value: e.name })));
    const tbody = document.querySelector("#profiles tbody");
    tbody.replaceChildren();
    document.getElementById("profile-new").hidden = false;
    for (const p of data.profiles) {
      const d = p.data;
      const name = d.display_name || p.name;
      const actions = hub.el("td", { class: "actions" });
      const act = (label, handler) => actions.append(button(label, { label: `${label} ${name}` }, handler));
      if (p.can_edit) act("Edit", () => editProfile(p));
      act("Duplicate", async () => {
        await hub.api("POST", envApi("profiles", p.name, "/duplicate"), {});
        hub.status(`Duplicated ${name}.`);
        await loadEnvironments();
      });
      if (p.can_edit) act(p.hidden ? "Show" : "Hide", async () => {
        await hub.api("POST", envApi("profiles", p.name, "/hide"), { hidden: !p.hidden });
        hub.status(`${p.hidden ? "Shown" : "Hidden"}: ${name}.`);
        await loadEnvironments();
      });
      if (p.can_edit) act("Delete", async () => {
        if (!(await hub.confirm(`Delete the profile ${name}? Running servers keep going; its history stays.`))) return;
        await hub.api("DELETE", envApi("profiles", p.name));
        hub.status(`Deleted ${name}.`);
        await loadEnvironments();
      });
      act("History", () => showHistory("profiles", p, p.can_edit));
      tbody.append(hub.el("tr", { dataset: { profile: p.name } },
        hub.el("td", {}, hub.el("strong", {}, name), " ", hub.el("code", {}, p.name), p.hidden ? hub.el("span", { class: "badge" }, "hidden") : null,
          d.description ? hub.el("div", { class: "muted" }, d.description) : null),
        hub.el("td", { "data-label": "Groups" }, (d.allowed_groups || []).join(", ") || "everyone"),
        hub.el("td", { class: "resources", "data-label": "Resources" }, resources(d)),
        hub.el("td", { "data-label": "Source" }, p.source === "config" ? (p.read_only ? "values file (read-only)" : "values file") : `admin panel, version ${p.version}`),
        actions));
    }
    if (!data.profiles.length) tbody.append(hub.el("tr", {}, hub.el("td", { colspan: 5 }, "No profiles: users get the default server.")));
    const envs = document.querySelector("#local-envs tbody");
    envs.replaceChildren();
    for (const e of data.environments) {
      const runs = e.data.path ? `Python environment ${e.data.path}` : e.data.cmd ? `command ${[].concat(e.data.cmd).join(" ")}` : "—";
      const actions = hub.el("td", { class: "actions" }, button("History", { label: `History of ${e.name}` }, () => showHistory("local", e, e.can_edit)));
      if (e.can_edit && !e.data.cmd) actions.prepend(button("Build new version", { label: `Build a new version of ${e.name}` }, () => openBuild(e.name)));
      envs.append(hub.el("tr", { dataset: { env: e.name } }, hub.el("td", {}, hub.el("code", {}, e.name)), hub.el("td", { "data-label": "Runs" }, runs),
        hub.el("td", { "data-label": "Source" }, e.source === "config" ? "values file" : `admin panel, version ${e.version}`), actions));
    }
    field("env-new").hidden = !data.unfiltered;
    if (!data.environments.length) envs.append(hub.el("tr", {}, hub.el("td", { colspan: 4 }, "No local environments.")));
  }
  const field = (id) => document.getElementById(id);
  function editProfile(p) {
    editingProfile = p;
    const d = (p && p.data) || {};
    const o = d.kubespawner_override || {};
    field("profile-title").textContent = p ? `Edit ${d.display_name || p.name}` : "New profile";
    field("pf-display-name").value = text(d.display_name);
    field("pf-slug").value = p ? p.name : "";
    field("pf-slug").disabled = !!p;
    field("pf-description").value = text(d.description);
    field("pf-image").value = text(o.image);
    field("pf-cpu-guarantee").value = text(o.cpu_guarantee);
    field("pf-cpu-limit").value = text(o.cpu_limit);
    field("pf-mem-guarantee").value = text(o.mem_guarantee);
    field("pf-mem-limit").value = text(o.mem_limit);
    field("pf-gpus").value = text((o.extra_resource_limits || {})[GPU]);
    field("pf-groups").value = (d.allowed_groups || []).join(", ");
    field("pf-comment").value = "";
    field("profile-errors").replaceChildren();
    profileDialog.returnValue = "";
    profileDialog.showModal();
  }
  function profileData() {
    const base = editingProfile ? JSON.parse(JSON.stringify(editingProfile.data)) : {};
    const o = base.kubespawner_override || {};
    const set = (obj, key, value) => { if (value === "") delete obj[key]; else obj[key] = value; };
    set(base, "display_name", field("pf-display-name").value.trim());
    if (!editingProfile) set(base, "slug", field("pf-slug").value.trim());
    set(base, "description", field("pf-description").value.trim());
    set(o, "image", field("pf-image").value.trim());
    set(o, "cpu_guarantee", field("pf-cpu-guarantee").value.trim());
    set(o, "cpu_limit", field("pf-cpu-limit").value.trim());
    set(o, "mem_guarantee", field("pf-mem-guarantee").value.trim());
    set(o, "mem_limit", field("pf-mem-limit").value.trim());
    const gpus = field("pf-gpus").value.trim();
    const extra = o.extra_resource_limits || {};
    if (gpus === "" || gpus === "0") delete extra[GPU]; else extra[GPU] = Number(gpus);
    if (Object.keys(extra).length) o.extra_resource_limits = extra; else delete o.extra_resource_limits;
    if (Object.keys(o).length) base.kubespawner_override = o; else delete base.kubespawner_override;
    const groups = field("pf-groups").value.split(",").map((g) => g.trim()).filter(Boolean);
    if (groups.length) base.allowed_groups = groups; else delete base.allowed_groups;
    return base;
  }
  field("profile-new")?.addEventListener("click", () => editProfile(null));
  field("profile-form")?.addEventListener("submit", (e) => {
    if (!e.submitter || e.submitter.value !== "ok") return;
    e.preventDefault();
    hub.act(e.submitter, async () => {
      const errors = field("profile-errors");
      errors.replaceChildren();
      const body = { data: profileData(), comment: field("pf-comment").value.trim() };
      try {
        if (editingProfile) {
          body.version = editingProfile.version;
          await hub.api("PUT", envApi("profiles", editingProfile.name), body);
        } else {
          await hub.api("POST", envApi("profiles"), body);
        }
      } catch (error) {
        const problems = error.problems || [{ field: "", message: error.message }];
        errors.replaceChildren(...problems.map((p) => hub.el("li", {}, p.field ? `${p.field}: ${p.message}` : p.message)));
        return;
      }
      profileDialog.close("ok");
      hub.status(`Saved ${body.data.display_name}.`);
      await loadEnvironments();
    });
  });
  async function showHistory(kind, object, canRestore) {
    const data = await hub.api("GET", envApi(kind, object.name, "/history"));
    field("history-title").textContent = `History of ${object.name}`;
    const list = field("history-list");
    list.replaceChildren(...data.versions.map((v) => hub.el("li", { dataset: { version: v.version } },
      hub.el("p", {}, hub.el("strong", {}, `Version ${v.version}`), ` — ${v.action} by `, hub.el("span", { class: "author" }, v.author), `, ${hub.when(v.created)}`,
        v.comment ? hub.el("span", { class: "comment" }, `: ${v.comment}`) : null),
      v.diff ? hub.el("pre", { class: "log diff" }, v.diff) : null,
      canRestore && v.version !== object.version ? button(`Restore version ${v.version}`, {}, async () => {
        await hub.api("POST", envApi(kind, object.name, "/restore"), { version: v.version });
        field("history").close();
        hub.status(`Restored version ${v.version} of ${object.name}.`);
        await loadEnvironments();
      }) : null)));
    field("history").showModal();
  }
  // Builds: the log is followed until the build ends.
  const buildDialog = field("build-dialog");
  async function openBuild(name) {
    field("build-name").value = name || "";
    field("build-name").disabled = !!name;
    field("build-title").textContent = name ? `Build a new version of ${name}` : "New environment";
    field("build-comment").value = "";
    field("build-state").textContent = "";
    field("build-log").textContent = "";
    field("build-requirements").value = "";
    if (name) {
      const last = await hub.api("GET", envApi("local", name, "/build"));
      field("build-requirements").value = (last.requirements || []).join("\n");
      showBuild(last);
    }
    buildDialog.returnValue = "";
    buildDialog.showModal();
  }
  function showBuild(status) {
    const words = { running: "Building…", succeeded: `Built: version ${status.version}.`, failed: "The build failed; the previous version stays in use." };
    field("build-state").textContent = words[status.state] || "";
    field("build-log").textContent = status.log || "";
    field("build-log").scrollTop = field("build-log").scrollHeight;
  }
  async function followBuild(name) {
    for (;;) {
      const status = await hub.api("GET", envApi("local", name, "/build"));
      showBuild(status);
      if (status.state !== "running") {
        await loadEnvironments();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  field("env-new")?.addEventListener("click", () => openBuild(null).catch(showError));
  field("build-form")?.addEventListener("submit", (e) => {
    if (!e.submitter || e.submitter.value !== "ok") return;
    e.preventDefault();
    hub.act(e.submitter, async () => {
      const name = field("build-name").value.trim();
      try {
        const status = await hub.api("POST", envApi("local", name, "/build"), {
          requirements: field("build-requirements").value, comment: field("build-comment").value.trim(),
        });
        showBuild(status);
      } catch (error) {
        const problems = error.problems || [{ field: "", message: error.message }];
        field("build-state").textContent = problems.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join("; ");
        return;
      }
      await followBuild(name);
    });
  });
  if (envTab) envTab.addEventListener("click", () => loadEnvironments().catch(showError));

  loadUsers().catch(showError);
})();
