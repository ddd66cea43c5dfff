// The server-options form (free-text fields shown only for "other") and the progress page.
"use strict";
document.querySelectorAll("select[data-unlisted]").forEach((select) => {
  const name = select.dataset.unlisted;
  if (!name) return;
  const box = document.getElementById(name + "-box");
  const input = document.getElementById(name);
  const sync = () => { box.hidden = select.value !== "unlisted_choice"; };
  select.addEventListener("change", sync);
  sync();
  input.addEventListener("input", () => input.reportValidity());
});
document.querySelectorAll(".profile").forEach((card) => {
  card.addEventListener("focusin", () => {
    const radio = card.querySelector("input[name=profile]");
    if (radio) radio.checked = true;
  });
});

const pending = document.getElementById("pending");
if (pending) {
  const next = pending.dataset.next;
  const source = new EventSource(pending.dataset.progressUrl);
  source.onmessage = (e) => {
    const event = JSON.parse(e.data);
    if (event.progress !== undefined) document.getElementById("progress").value = event.progress;
    document.getElementById("message").textContent = event.message;
    const li = document.createElement("li");
    li.textContent = event.message;
    document.getElementById("events").appendChild(li);
    if (event.ready) { source.close(); location.href = next || event.url; }
    if (event.failed) { source.close(); location.reload(); }
  };
}
