// The console works without this file; it adds confirmations, pretty JSON and the live log.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
});

function prettyJson() {
  for (const pre of document.querySelectorAll("pre[data-pretty]")) {
    try {
      pre.textContent = JSON.stringify(JSON.parse(pre.textContent), null, 2);
    } catch (_) { /* not JSON: shown as it is */ }
  }
}

function line(entry) {
  // Built with textContent only: a plugin's log line is text, never markup.
  const div = document.createElement("div");
  div.className = `line lv-${entry.level} k-${entry.kind}`;
  const time = document.createElement("time");
  time.textContent = new Date(entry.time * 1000).toLocaleString();
  const level = document.createElement("b");
  level.textContent = entry.level;
  div.append(time, " ", level, " ");
  if (entry.plugin) {
    const plugin = document.createElement("i");
    plugin.textContent = entry.plugin;
    div.append(plugin, " ");
  }
  const message = document.createElement("span");
  message.textContent = entry.kind === "event" && entry.data
    ? `${entry.message} ${JSON.stringify(entry.data)}` : entry.message;
  div.append(message);
  return div;
}

function liveLog() {
  const box = document.getElementById("live-log");
  if (!box || !window.EventSource) return;
  const status = document.getElementById("live-state");
  let last = Number(box.dataset.after || 0);
  const source = new EventSource(box.dataset.stream);
  const add = (message) => {
    const entry = JSON.parse(message.data);
    if (entry.id <= last) return;  // already rendered by the server
    last = entry.id;
    box.prepend(line(entry));
    while (box.childElementCount > 1000) box.lastElementChild.remove();
  };
  for (const kind of ["log", "host", "event"]) source.addEventListener(kind, add);
  source.addEventListener("dropped", (m) => {
    box.prepend(line({ time: Date.now() / 1000, level: "warn", kind: "host",
                       message: `${m.data} entries dropped (this view fell behind)` }));
  });
  source.onopen = () => { status.textContent = "live"; status.classList.add("on"); };
  source.onerror = () => { status.textContent = "reconnecting…"; status.classList.remove("on"); };
}

document.addEventListener("DOMContentLoaded", () => { prettyJson(); liveLog(); });
