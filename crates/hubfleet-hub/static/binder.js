// The binder launch page: follows BinderHub's event stream, shows the build log, and opens the
// server (at labpath/urlpath) when the `ready` event comes.
"use strict";
const binder = document.getElementById("binder");
if (binder) {
  const log = document.getElementById("binder-log");
  const phase = document.getElementById("binder-phase");
  const labels = {
    waiting: "Waiting for a build slot",
    fetching: "Fetching the repository",
    building: "Building the environment",
    built: "Environment ready",
    launching: "Starting your server",
    ready: "Server ready: opening it",
    failed: "Launch failed",
  };
  const source = new EventSource(binder.dataset.buildUrl);
  source.onmessage = (e) => {
    const event = JSON.parse(e.data);
    if (event.message) log.textContent += event.message;
    log.scrollTop = log.scrollHeight;
    phase.textContent = labels[event.phase] || event.phase;
    if (phase.dataset.phase !== event.phase) {
      // The phases in order, for whoever reads the page after the fact.
      phase.dataset.history = (phase.dataset.history ? phase.dataset.history + " " : "") + event.phase;
    }
    phase.dataset.phase = event.phase;
    if (event.phase === "failed") {
      source.close();
      phase.classList.add("error");
    }
    if (event.phase === "ready") {
      source.close();
      const labpath = binder.dataset.labpath;
      const urlpath = binder.dataset.urlpath;
      let target = event.url;
      if (labpath) target += "lab/tree/" + labpath.split("/").map(encodeURIComponent).join("/");
      else if (urlpath) target += urlpath.replace(/^\/+/, "");
      location.href = target;
    }
  };
  source.onerror = () => {
    if (phase.dataset.phase !== "ready" && phase.dataset.phase !== "failed") {
      source.close();
      phase.textContent = "Lost the connection to the hub; reload the page to try again";
      phase.classList.add("error");
    }
  };
}
