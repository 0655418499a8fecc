// The console works without this file; it adds confirmations, pretty JSON and live pages.
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

// One form of date on every page, the server's too: 2025-05-12 15:04:05, local time.
function isoTime(seconds) {
  const d = new Date(seconds * 1000);
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} `
    + `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

function line(entry) {
  // Built with textContent only: a plugin's log line is text, never markup.
  const div = document.createElement("div");
  div.className = `line lv-${entry.level} k-${entry.kind}`;
  const time = document.createElement("time");
  time.textContent = isoTime(entry.time);
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

// One stream a page (/api/v1/live): figures written in place into [data-live] elements, the
// page fetched again when its rows changed (a "version." key), the Logs page's entries. A lost
// connection is retried after 1, 2, 4 ... 30 s, and the header says which state it is in.
function live() {
  const src = document.body.dataset.live;
  const status = document.getElementById("live-state");
  if (!src || !status || !window.EventSource) return;
  const box = document.getElementById("live-log");
  let last = box ? Number(box.dataset.after || 0) : 0;
  let delay = 1000;
  const versions = {};
  const show = (text, on) => { status.textContent = text; status.classList.toggle("on", on); };
  const apply = (figures) => {
    let stale = false;
    for (const [key, value] of Object.entries(figures)) {
      if (key.startsWith("version.")) {
        stale = stale || (key in versions && versions[key] !== value);
        versions[key] = value;
        continue;
      }
      for (const el of document.querySelectorAll(`[data-live="${CSS.escape(key)}"]`)) {
        el.textContent = value;
        if (el.dataset.liveBadge !== undefined) el.className = `badge ${el.dataset.liveBadge}${value}`;
      }
    }
    if (stale) refresh();
  };
  const add = (message) => {
    const entry = JSON.parse(message.data);
    if (!box || entry.id <= last) return;  // already rendered by the server
    last = entry.id;
    box.prepend(line(entry));
    while (box.childElementCount > 1000) box.lastElementChild.remove();
  };
  const connect = () => {
    const source = new EventSource(src);
    source.addEventListener("figures", (m) => apply(JSON.parse(m.data)));
    for (const kind of ["log", "host", "event"]) source.addEventListener(kind, add);
    source.addEventListener("dropped", (m) => {
      if (box) box.prepend(line({ time: Date.now() / 1000, level: "warn", kind: "host",
                                  message: `${m.data} entries dropped (this view fell behind)` }));
    });
    source.onopen = () => { delay = 1000; show("live", true); status.title = "Figures on this page update by themselves"; };
    source.onerror = () => {
      source.close();
      show("reconnecting…", false);
      status.title = `The live connection dropped; trying again in ${Math.round(delay / 1000)} s`;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  };
  connect();
}

// Fetch this page again and swap its <main>, unless someone is typing in one of its forms.
// At most one fetch every 2 s; a change seen meanwhile is fetched when that time is up, so the
// page never stays on the first of two quick changes (a host silent, then reaped).
let refreshing = false;
let again = false;
async function refresh() {
  const main = document.querySelector("main");
  const busy = document.activeElement && main.contains(document.activeElement)
    && document.activeElement.matches("input, textarea, select");
  if (busy) return;
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    const answer = await fetch(location.href, { headers: { Accept: "text/html" } });
    if (!answer.ok) return;
    const next = new DOMParser().parseFromString(await answer.text(), "text/html").querySelector("main");
    if (next) {
      const kept = editedForms(main);
      main.replaceChildren(...next.childNodes);
      restoreForms(main, kept);
      prettyJson();
      invokeFields();
    }
  } finally {
    setTimeout(() => {
      refreshing = false;
      if (again) { again = false; refresh(); }
    }, 2000);
  }
}


// What the user set in the page's forms (by form id and control name), set again in the page
// drawn anew: a refresh (a plugin's version moved, say) must not undo a choice made and not yet
// sent, such as the handler picked in the invoke form and its fields half filled.
document.addEventListener("input", (e) => { if (e.target.form) e.target.form.dataset.edited = "1"; });
document.addEventListener("change", (e) => { if (e.target.form) e.target.form.dataset.edited = "1"; });

function editedForms(root) {
  const kept = new Map();
  for (const form of root.querySelectorAll("form[id][data-edited]")) {
    kept.set(form.id, [...form.elements].filter((el) => el.name && el.type !== "file")
      .map((el) => [el.name, el.type === "checkbox" || el.type === "radio" ? el.checked : el.value]));
  }
  return kept;
}

function restoreForms(root, kept) {
  for (const [id, values] of kept) {
    const form = root.querySelector(`form#${CSS.escape(id)}`);
    if (!form) continue;
    form.dataset.edited = "1";
    for (const [name, value] of values) {
      const el = form.elements.namedItem(name);
      if (!el || el instanceof RadioNodeList) continue;  // (a radio group: not kept)
      if (typeof value === "boolean") el.checked = value;
      else if (el.tagName !== "SELECT" || [...el.options].some((o) => o.value === value)) el.value = value;
    }
  }
}

// The invoke form: show the argument fields of the chosen handler (and the free text field
// only when the input is not given as fields). Without this file every fieldset shows.
function invokeFields() {
  const form = document.getElementById("invoke-form");
  if (!form) return;
  const handler = form.querySelector("select[name=handler]");
  const format = form.querySelector("select[name=format]");
  const text = form.querySelector("textarea[name=input]");
  const show = () => {
    const asFields = format.value === "fields";
    for (const set of form.querySelectorAll("fieldset.args")) {
      set.hidden = !asFields || set.dataset.argsFor !== handler.value;
    }
    const has = [...form.querySelectorAll("fieldset.args")].some((s) => s.dataset.argsFor === handler.value);
    text.hidden = asFields && has;
  };
  handler.addEventListener("change", show);
  format.addEventListener("change", show);
  show();
}

// On a phone the nav is a row that scrolls sideways: the current page's link is brought into it.
function navInSight() {
  const nav = document.querySelector(".top nav");
  const here = nav && nav.querySelector("a.active");
  if (!here || nav.scrollWidth <= nav.clientWidth) return;
  const offset = here.getBoundingClientRect().left - nav.getBoundingClientRect().left;
  nav.scrollLeft += offset - (nav.clientWidth - here.offsetWidth) / 2;
}

document.addEventListener("DOMContentLoaded", () => { navInSight(); prettyJson(); invokeFields(); live(); });
