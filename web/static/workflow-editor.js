// The workflow editor (/workflows/NAME/edit): the definition drawn as a graph of its steps,
// edited by drag and forms, checked by the server's validator (the one `omnicore workflows
// validate` uses) as it changes, saved into the YAML file, run and watched on the same graph.
// Plain JS and SVG, no dependencies: everything is built with createElement/textContent, so
// no name or output a plugin controls is ever read as markup (and the CSP allows no inline code).
"use strict";

(() => {
  const root = document.getElementById("wfe");
  if (!root) return;
  const NAME = root.dataset.name;
  const CSRF = root.dataset.csrf;
  const WIDE = window.matchMedia("(min-width: 800px)");
  const EDIT = root.dataset.editable === "true" && WIDE.matches;
  const W = 172, H = 58, GX = 48, GY = 22, PAD = 24;
  // A phone reads down, not across: the graph is laid out top to bottom there.
  const DOWN = !WIDE.matches;
  const SVG = "http://www.w3.org/2000/svg";
  const ENDED = ["succeeded", "failed", "cancelled"];
  const STEP_ID = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

  const $ = (id) => document.getElementById(id);
  const svg = $("wfe-graph"), canvas = $("wfe-canvas"), panel = $("wfe-panel");
  let doc = null, digest = null, saved = "", pos = {}, selected = null, edge = null;
  let undo = [], redo = [], problems = [], palette = { plugins: [], connectors: [], workflows: [] };
  let run = null, before = null, checking = 0, timer = null;
  // The graph is drawn smaller (down to MIN_SCALE) rather than cut off when it is wider than
  // the canvas; the scale holds still while something is dragged.
  const MIN_SCALE = 0.7;
  let scale = 1;

  // -- small helpers -------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function svgEl(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRF-Token"] = CSRF;
    const answer = await fetch(url, { method, headers, credentials: "same-origin",
                                      body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await answer.json(); } catch (_) { /* an empty answer */ }
    return { ok: answer.ok, status: answer.status, data };
  }

  // A description's `code` spans (Markdown) as <code>; the rest stays text.
  const md = (text) => String(text || "").split(/`([^`\n]+)`/).map((part, i) => (i % 2 ? el("code", { text: part }) : part));
  const plain = (text) => String(text || "").replace(/`([^`\n]+)`/g, "$1");

  const fileUrl = `/api/v1/workflows/${encodeURIComponent(NAME)}/file`;
  const say = (text, bad = false) => {
    const m = $("wfe-message");
    m.textContent = text;
    m.classList.toggle("bad", bad);
    delete m.dataset.run;  // another message replaces a run's: its end is not announced over it
  };

  // -- the model -----------------------------------------------------------------------------

  const lists = () => [["steps", doc.steps || []], ["on_failure", doc.on_failure || []]];
  const allSteps = () => lists().flatMap(([list, items]) => items.map((step) => ({ step, list })));
  const find = (id) => allSteps().find((s) => s.step.id === id);
  const dirty = () => JSON.stringify(doc) !== saved;
  // Work that leaving would lose: a change since the file was opened or saved (a new file
  // is "dirty" from the start, but leaving it untouched loses nothing).
  let opened = "";
  const unsaved = () => EDIT && doc !== null && JSON.stringify(doc) !== (digest ? saved : opened);
  // connector:NAME/query and /execute: a statement on a database connector, not a request.
  const statementOf = (step) => (/^connector:[^/]+\/(query|execute)$/.exec(step.uses || "") || [])[1];

  function kindOf(step) {
    if (step.wait !== undefined) {
      const wait = step.wait;
      if (wait === "approval" || (wait && typeof wait === "object" && "approval" in wait)) return "approval";
      return "wait";
    }
    return String(step.uses || "").split(":")[0] || "plugin";
  }

  // The steps a step's expressions read (steps.X...): the validator counts them as needs.
  function implied(step) {
    const text = JSON.stringify([step.with, step.if, step.for_each, step.path, step.query, step.headers]);
    const found = new Set([...text.matchAll(/steps\.([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]));
    found.delete(step.id);
    for (const n of step.needs || []) found.delete(n);
    return [...found].filter((n) => find(n));
  }

  function usesText(step) {
    const kind = kindOf(step);
    if (kind === "approval") return "approval";
    if (kind === "wait") return `wait ${Object.keys(step.wait || {})[0] || ""}`;
    const uses = String(step.uses || "");
    return uses.slice(uses.indexOf(":") + 1) + (kind === "connector" && step.path ? ` ${step.method || "GET"} ${step.path}` : "");
  }

  function handlerOf(step) {
    const m = /^plugin:([^/]+)\/(.+)$/.exec(step.uses || "");
    if (!m) return null;
    const plugin = palette.plugins.find((p) => p.name === m[1]);
    return plugin ? plugin.handlers.find((h) => h.name === m[2]) || null : null;
  }

  // Every change goes through here: one undo step, then the graph, the form and a check.
  function change(fn, { form = true } = {}) {
    undo.push(JSON.stringify(doc));
    redo = [];
    fn();
    after(form);
  }

  function after(form = true) {
    render();
    if (form) showPanel();
    status();
    check();
  }

  function restore(from, to) {
    if (!from.length) return;
    to.push(JSON.stringify(doc));
    doc = JSON.parse(from.pop());
    if (selected && !find(selected)) selected = null;
    edge = null;
    after();
  }

  function uniqueId(base) {
    let id = String(base).replace(/[^A-Za-z0-9_]/g, "_").replace(/^([0-9])/, "_$1").slice(0, 60) || "step";
    const taken = new Set(allSteps().map((s) => s.step.id));
    if (!taken.has(id)) return id;
    let n = 2;
    while (taken.has(`${id}_${n}`)) n += 1;
    return `${id}_${n}`;
  }

  function addStep(item, at) {
    const id = uniqueId(item.id);
    const step = { id, ...item.step };
    change(() => {
      doc.steps = doc.steps || [];
      // A step added by a click (or Enter) runs after the selected one, or the last one, as
      // a person reading left to right expects; one dropped at a spot is linked by hand.
      const prev = at ? null : (selected && find(selected) ? selected : (doc.steps.at(-1) || {}).id);
      if (prev) step.needs = [prev];
      doc.steps.push(step);
      pos[id] = at || freeSpot(prev);
      selected = id;
    });
  }

  function freeSpot(prev) {
    const base = prev && pos[prev] ? { x: pos[prev].x + W + GX, y: pos[prev].y } : { x: PAD, y: PAD };
    const used = Object.values(pos);
    while (used.some((p) => Math.abs(p.x - base.x) < W && Math.abs(p.y - base.y) < H)) base.y += H + GY;
    return base;
  }

  function connect(from, to) {
    const target = find(to);
    if (!target || from === to || (target.step.needs || []).includes(from)) return;
    change(() => { target.step.needs = [...(target.step.needs || []), from]; });
  }

  function disconnect(from, to) {
    const target = find(to);
    if (!target) return;
    change(() => {
      target.step.needs = (target.step.needs || []).filter((n) => n !== from);
      if (!target.step.needs.length) delete target.step.needs;
      edge = null;
    });
  }

  function removeStep(id) {
    change(() => {
      for (const [list] of lists()) {
        if (doc[list]) doc[list] = doc[list].filter((s) => s.id !== id);
      }
      if (doc.on_failure && !doc.on_failure.length) delete doc.on_failure;
      for (const { step } of allSteps()) {
        if (step.needs) {
          step.needs = step.needs.filter((n) => n !== id);
          if (!step.needs.length) delete step.needs;
        }
      }
      selected = null;  // its place is kept: an undo puts it back where it was
    });
  }

  function rename(old, id) {
    change(() => {
      find(old).step.id = id;
      for (const { step } of allSteps()) {
        if (step.needs) step.needs = step.needs.map((n) => (n === old ? id : n));
      }
      pos[id] = pos[old];
      delete pos[old];
      selected = id;
    }, { form: false });
  }

  // -- layout and drawing --------------------------------------------------------------------

  function layout() {
    const depth = {};
    const items = allSteps();
    const ids = new Set(items.map((s) => s.step.id));
    const level = (id, seen) => {
      if (depth[id] !== undefined) return depth[id];
      const s = find(id);
      const needs = [...((s && s.step.needs) || []), ...(s ? implied(s.step) : [])]
        .filter((n) => ids.has(n) && !seen.has(n));
      depth[id] = 1 + Math.max(-1, ...needs.map((n) => level(n, new Set([...seen, id]))));
      return depth[id];
    };
    const main = items.filter((s) => s.list === "steps");
    main.forEach((s) => level(s.step.id, new Set()));
    const last = Math.max(-1, ...Object.values(depth));
    items.filter((s) => s.list !== "steps").forEach((s) => { depth[s.step.id] = last + 1; });
    const rows = {};
    pos = {};
    for (const { step } of items) {
      const col = depth[step.id];
      rows[col] = (rows[col] || 0) + 1;
      const [across, down] = [col, rows[col] - 1];
      pos[step.id] = DOWN ? { x: PAD + down * (W + GX), y: PAD + across * (H + GX) }
        : { x: PAD + across * (W + GX), y: PAD + down * (H + GY) };
    }
  }

  function stateOf(id) {
    if (!run) return null;
    const rows = run.steps.filter((r) => r.step === id);
    const row = rows.find((r) => r.index === -1) || rows[0];
    return row || null;
  }

  function render() {
    svg.replaceChildren();
    const items = allSteps();
    for (const { step } of items) if (!pos[step.id]) pos[step.id] = freeSpot(null);
    const coords = items.map((s) => pos[s.step.id]);
    const room = canvas.clientWidth - 4;
    const need = Math.max(0, ...coords.map((p) => p.x + W + PAD));
    if (!drag) scale = DOWN || need <= room ? 1 : Math.max(MIN_SCALE, room / need);
    const width = Math.max(room / scale, need);
    const height = Math.max(360 / scale, ...coords.map((p) => p.y + H + PAD));
    svg.setAttribute("width", width * scale);
    svg.setAttribute("height", height * scale);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const defs = svgEl("defs");
    const marker = svgEl("marker", { id: "wfe-arrow", viewBox: "0 0 10 10", refX: "9", refY: "5",
                                      markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
    marker.append(svgEl("path", { d: "M0 0 L10 5 L0 10 z", class: "wfe-arrowhead" }));
    defs.append(marker);
    svg.append(defs);
    for (const { step } of items) {
      for (const need of step.needs || []) {
        if (!pos[need]) continue;
        const d = curve(pos[need], pos[step.id]);
        const on = edge && edge[0] === need && edge[1] === step.id;
        const g = svgEl("g", { class: `wfe-link${on ? " selected" : ""}`, "data-from": need, "data-to": step.id });
        g.append(svgEl("path", { d, class: "wfe-edge", "marker-end": "url(#wfe-arrow)" }),
                 svgEl("path", { d, class: "wfe-hit" }));
        svg.append(g);
      }
      for (const need of implied(step)) {
        const g = svgEl("g", { class: "wfe-implied", "data-from": need, "data-to": step.id });
        g.append(svgEl("title", {}, `${step.id} reads ${need}'s output, so it runs after it`),
                 svgEl("path", { d: curve(pos[need], pos[step.id]), class: "wfe-edge" }));
        svg.append(g);
      }
    }
    for (const { step, list } of items) {
      const p = pos[step.id];
      const kind = kindOf(step);
      const mine = problems.filter((x) => x.step === step.id);
      const row = stateOf(step.id);
      const cls = ["wfe-node", `k-${kind}`, list === "on_failure" ? "on-failure" : "",
                   step.id === selected ? "selected" : "",
                   mine.some((x) => x.severity === "error") ? "bad" : (mine.length ? "warn" : ""),
                   row ? `g-${row.state}` : ""].filter(Boolean).join(" ");
      const g = svgEl("g", { class: cls, "data-step": step.id, tabindex: "0" });
      g.append(svgEl("title", {}, [step.id, usesText(step), ...mine.map((x) => x.message)].join("\n")));
      g.append(svgEl("rect", { x: p.x, y: p.y, width: W, height: H, rx: 8 }));
      g.append(svgEl("rect", { x: p.x, y: p.y, width: 6, height: H, rx: 3, class: "wfe-kind" }));
      g.append(svgEl("text", { x: p.x + 14, y: p.y + 19, class: "wfe-id" }, clip(step.id, 20)));
      g.append(svgEl("text", { x: p.x + 14, y: p.y + 35, class: "wfe-uses" }, clip(usesText(step), 24)));
      const marks = [step.if !== undefined ? "if" : "", step.for_each !== undefined ? "for each" : "",
                     list === "on_failure" ? "on failure" : ""].filter(Boolean).join(" · ");
      const line = row ? `${row.state}${row.attempt > 1 ? ` · attempt ${row.attempt}` : ""}`
        : (mine.length ? `⚠ ${mine.length} problem${mine.length > 1 ? "s" : ""}` : marks);
      g.append(svgEl("text", { x: p.x + 14, y: p.y + 50, class: "wfe-state" }, clip(line, 26)));
      if (EDIT) g.append(svgEl("circle", { cx: p.x + W, cy: p.y + H / 2, r: 7, class: "wfe-port" }));
      svg.append(g);
    }
    if (!items.length) {
      svg.append(svgEl("text", { x: PAD, y: PAD + 20, class: "wfe-empty" },
                       EDIT ? "No steps yet: drag a handler or an approval from the palette." : "No steps."));
    }
  }

  // Whether someone is in a field of the panel: it is not built again under their hands.
  const typing = () => panel.contains(document.activeElement)
    && document.activeElement.matches("input, textarea, select");
  function curve(a, b) {
    if (DOWN) {
      const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y, mid = (y1 + y2) / 2;
      return `M${x1} ${y1} C${x1} ${mid} ${x2} ${mid} ${x2} ${y2 - 2}`;
    }
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mid = (x1 + x2) / 2;
    return `M${x1} ${y1} C${mid} ${y1} ${mid} ${y2} ${x2 - 2} ${y2}`;
  }

  const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

  // -- pointer: move nodes, draw links, pick links -------------------------------------------

  function point(event) {
    const r = svg.getBoundingClientRect();
    return { x: (event.clientX - r.left) / scale, y: (event.clientY - r.top) / scale };
  }

  let drag = null;
  svg.addEventListener("pointerdown", (event) => {
    const port = event.target.closest(".wfe-port");
    const node = event.target.closest(".wfe-node");
    const link = event.target.closest(".wfe-link");
    if (port && node) {
      drag = { mode: "link", from: node.dataset.step, line: null };
    } else if (node) {
      const id = node.dataset.step, at = point(event);
      drag = { mode: "move", id, dx: at.x - pos[id].x, dy: at.y - pos[id].y, moved: false };
      if (selected !== id || edge) { selected = id; edge = null; render(); showPanel(); }
    } else if (link) {
      selected = null;
      edge = [link.dataset.from, link.dataset.to];
      render();
      showPanel();
      return;
    } else {
      if (selected || edge) { selected = null; edge = null; render(); showPanel(); }
      return;
    }
    svg.setPointerCapture(event.pointerId);
    event.preventDefault();
  });

  // A node is also reached with Tab and opened with Enter (its form is in the panel).
  svg.addEventListener("keydown", (event) => {
    const node = event.target.closest && event.target.closest(".wfe-node");
    if (!node || event.key !== "Enter") return;
    selected = node.dataset.step;
    edge = null;
    render();
    showPanel();
    const first = panel.querySelector("input, select, textarea");
    if (first) first.focus();
  });

  svg.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const at = point(event);
    if (drag.mode === "move") {
      pos[drag.id] = { x: Math.max(4, at.x - drag.dx), y: Math.max(4, at.y - drag.dy) };
      drag.moved = true;
      render();
    } else {
      const a = pos[drag.from];
      if (!drag.line) { drag.line = svgEl("path", { class: "wfe-edge wfe-drawing" }); }
      drag.line.setAttribute("d", `M${a.x + W} ${a.y + H / 2} L${at.x} ${at.y}`);
      svg.append(drag.line);
    }
  });

  svg.addEventListener("pointerup", (event) => {
    if (!drag) return;
    const done = drag;
    drag = null;
    if (done.mode === "link") {
      if (done.line) done.line.remove();
      const under = document.elementFromPoint(event.clientX, event.clientY);
      const node = under && under.closest(".wfe-node");
      if (node) connect(done.from, node.dataset.step);
    }
  });

  // -- the palette -----------------------------------------------------------------------------

  function paletteItems() {
    // The built-in steps first: they are few, and would sink below every plugin's handlers.
    const items = [
      { key: "approval", group: "Flow", label: "Approval", hint: "wait for a person to approve",
        id: "approve", step: { wait: { approval: { message: "Approve this run?" } } } },
      { key: "sleep", group: "Flow", label: "Pause", hint: "wait some time",
        id: "pause", step: { wait: { sleep: "30s" } } },
    ];
    for (const p of palette.plugins) {
      for (const h of p.handlers) {
        items.push({ key: `plugin:${p.name}/${h.name}`, group: p.name, label: h.title || h.name,
                     hint: h.description || `${p.name}/${h.name}`, id: h.name,
                     step: { uses: `plugin:${p.name}/${h.name}`, with: {} }, off: p.state !== "loaded" });
      }
    }
    // An HTTP connector takes requests; a postgres/mysql one statements (§4.1); a redis one
    // no step at all (a plugin granted redis reaches it).
    for (const { name, kind } of palette.connectors) {
      if (kind === "http") {
        items.push({ key: `connector:${name}`, group: "Connectors", label: name, hint: "an HTTP request through the connector",
                     id: name, step: { uses: `connector:${name}`, method: "GET", path: "/" } });
      } else if (kind === "postgres" || kind === "mysql") {
        items.push({ key: `connector:${name}/query`, group: "Databases", label: `${name}: query`,
                     hint: `a SQL query on the ${kind} database (its rows)`, id: name,
                     step: { uses: `connector:${name}/query`, with: { sql: "SELECT 1", params: [] } } });
        items.push({ key: `connector:${name}/execute`, group: "Databases", label: `${name}: execute`,
                     hint: `a SQL statement that changes the ${kind} database`, id: name,
                     step: { uses: `connector:${name}/execute`, with: { sql: "", params: [] } } });
      }
    }
    for (const w of palette.workflows.filter((w) => w !== NAME)) {
      items.push({ key: `workflow:${w}`, group: "Workflows", label: w, hint: "run it as one step",
                   id: w, step: { uses: `workflow:${w}` } });
    }
    return items;
  }

  function showPalette() {
    const list = $("wfe-items");
    const words = $("wfe-search").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    list.replaceChildren();
    let group = null;
    for (const item of paletteItems()) {
      const text = `${item.group} ${item.label} ${item.key} ${item.hint}`.toLowerCase();
      if (!words.every((w) => text.includes(w))) continue;
      if (item.group !== group) { group = item.group; list.append(el("li", { class: "wfe-group", text: group })); }
      const li = el("li", { class: `wfe-item${item.off ? " off" : ""}`, "data-item": item.key, tabindex: "0",
                            title: plain(item.hint) },
                    el("b", { text: item.label }), el("small", {}, ...md(item.hint)));
      li.addEventListener("pointerdown", (event) => startPaletteDrag(event, item, li));
      li.addEventListener("keydown", (event) => { if (event.key === "Enter") addStep(item); });
      list.append(li);
    }
  }

  function startPaletteDrag(event, item, li) {
    event.preventDefault();
    const start = { x: event.clientX, y: event.clientY };
    const ghost = el("div", { class: "wfe-ghost", text: item.label });
    let moved = false;
    const move = (e) => {
      if (!moved && Math.hypot(e.clientX - start.x, e.clientY - start.y) < 5) return;
      if (!moved) { document.body.append(ghost); moved = true; }
      ghost.style.left = `${e.clientX + 8}px`;
      ghost.style.top = `${e.clientY + 8}px`;
    };
    const up = (e) => {
      document.removeEventListener("pointermove", move);
      document.removeEventListener("pointerup", up);
      ghost.remove();
      if (!moved) { addStep(item); return; }
      const r = svg.getBoundingClientRect();
      const c = canvas.getBoundingClientRect();
      if (e.clientX >= c.left && e.clientX <= c.right && e.clientY >= c.top && e.clientY <= c.bottom) {
        addStep(item, { x: Math.max(4, (e.clientX - r.left) / scale - W / 2), y: Math.max(4, (e.clientY - r.top) / scale - H / 2) });
      }
    };
    document.addEventListener("pointermove", move);
    document.addEventListener("pointerup", up);
    li.focus();
  }

  // -- forms -----------------------------------------------------------------------------------

  // A field edits the draft as it is typed (one undo step per visit to the field).
  function bind(input, apply) {
    input.addEventListener("focus", () => { before = JSON.stringify(doc); });
    const handler = () => {
      if (input.name.startsWith("run.")) return apply(input);  // a run's inputs are no edit
      if (before !== null) { undo.push(before); redo = []; before = null; }
      apply(input);
      render();
      status();
      check();
    };
    input.addEventListener(input.type === "checkbox" || input.tagName === "SELECT" ? "change" : "input", handler);
    return input;
  }

  const isExpr = (v) => typeof v === "string" && v.includes("${{");

  function typed(kind, raw) {
    if (isExpr(raw)) return raw;
    if (kind === "integer" && /^-?\d+$/.test(raw.trim())) return Number(raw);
    if (kind === "number" && raw.trim() !== "" && !Number.isNaN(Number(raw))) return Number(raw);
    if (kind === "boolean" && (raw === "true" || raw === "false")) return raw === "true";
    if (kind === "object" || kind === "array" || kind === "json") {
      try { return JSON.parse(raw); } catch (_) { return raw; }
    }
    return raw;
  }

  // One input per property of a JSON Schema object: typed, enums as selects, required marked;
  // every field also takes a ${{ }} expression (the "ƒx" switch for fields that are not text).
  function schemaFields(schema, values, set, prefix) {
    const box = el("div", { class: "wfe-fields" });
    const props = (schema && schema.properties) || {};
    const required = new Set((schema && schema.required) || []);
    for (const [key, sub] of Object.entries(props)) {
      const kind = (sub && (sub.enum ? "enum" : sub.type)) || "json";
      const value = values[key];
      const name = `${prefix}.${key}`;
      const label = el("label", { class: "wfe-field" },
                       el("span", {}, el("b", { text: key }), required.has(key) ? el("b", { class: "req", title: "required", text: " *" }) : null,
                          " ", el("code", { class: "hint", text: kind }),
                          sub && sub.description ? el("span", { class: "hint" }, " — ", ...md(sub.description)) : null));
      let expr = isExpr(value);
      const write = (v) => set(key, v === "" || v === undefined ? undefined : v);
      const make = () => {
        if (kind === "boolean" && !expr) {
          return bind(el("input", { type: "checkbox", name, checked: value === true, disabled: !EDIT }), (i) => write(i.checked));
        }
        if (kind === "enum" && !expr) {
          const select = el("select", { name, disabled: !EDIT }, el("option", { value: "", text: "—" }),
                            ...sub.enum.map((o) => el("option", { value: String(o), text: String(o), selected: String(value) === String(o) })));
          return bind(select, (i) => write(i.value === "" ? undefined : sub.enum.find((o) => String(o) === i.value)));
        }
        if ((kind === "object" || kind === "array" || kind === "json") && !expr) {
          return bind(el("textarea", { name, rows: "3", placeholder: "JSON", disabled: !EDIT },
                         value === undefined ? "" : JSON.stringify(value, null, 2)), (i) => write(i.value.trim() === "" ? undefined : typed(kind, i.value)));
        }
        const text = value === undefined ? "" : (typeof value === "string" ? value : JSON.stringify(value));
        return bind(el("input", { name, value: text, disabled: !EDIT, required: required.has(key),
                                  placeholder: kind === "string" ? "text or ${{ expression }}" : "${{ expression }}",
                                  inputmode: kind === "integer" || kind === "number" ? "decimal" : undefined }),
                    (i) => write(typed(kind, i.value)));
      };
      let input = make();
      label.append(input);
      if (kind !== "string") {
        const fx = el("input", { type: "checkbox", class: "wfe-fx", title: "an expression", checked: expr, disabled: !EDIT,
                                 "aria-label": `${key} as an expression` });
        fx.addEventListener("change", () => { expr = fx.checked; const next = make(); input.replaceWith(next); input = next; });
        label.querySelector("span").append(" ", el("span", { class: "wfe-fx-box" }, fx, "ƒx"));
      }
      box.append(label);
    }
    return box;
  }

  function field(labelText, value, apply, attrs = {}) {
    return el("label", {}, el("span", { text: labelText }),
              bind(el("input", { value: value === undefined ? "" : String(value), disabled: !EDIT, ...attrs }), apply));
  }

  function showPanel() {
    panel.replaceChildren();
    if (edge) return panel.append(linkPanel());
    const found = selected && find(selected);
    panel.append(found ? stepPanel(found.step) : workflowPanel());
    panelProblems();
  }

  // The field a problem's path is about, in the panel of the step (or the workflow) it is in.
  function fieldOf(p) {
    const rest = p.step ? String(p.path || "").replace(/^(steps|on_failure)\[\d+\]\.?/, "") : String(p.path || "");
    const [key, sub] = rest.split(".");
    const step = p.step && find(p.step);
    if (p.step && key === "with") {
      const wanted = sub || (/requires input '([^']+)'/.exec(p.message) || [])[1];
      if (step && statementOf(step.step)) return sub === "params" ? "params" : "sql";
      return panel.querySelector(`[name="in.${CSS.escape(wanted || "")}"]`) ? `in.${wanted}` : "with";
    }
    if (p.step && key === "wait") return step && step.step.wait && "sleep" in step.step.wait ? "sleep" : "approval.message";
    if (p.step) return { id: "step.id", if: "if", for_each: "for_each", path: "path", method: "method" }[key] || null;
    const trigger = /^triggers\[(\d+)\]/.exec(rest);
    if (trigger) return `trigger.${trigger[1]}`;
    if (key === "outputs") return panel.querySelector(`[name="output.${CSS.escape(sub || "")}"]`) ? `output.${sub}` : "new-output";
    return key === "description" ? "description" : (key === "inputs" ? "new-input" : null);
  }

  // Each problem of what the panel shows: beside its field when it has one, and all of them in
  // the panel's list, redrawn with every check (also while a field is being typed in).
  function panelProblems() {
    for (const old of panel.querySelectorAll(".wfe-field-error")) old.remove();
    for (const bad of panel.querySelectorAll("[aria-invalid=true]")) { bad.classList.remove("bad"); bad.removeAttribute("aria-invalid"); }
    const list = panel.querySelector("#wfe-step-problems");
    const found = selected && !edge && find(selected);
    const mine = problems.filter((x) => (found ? x.step === selected : !x.step));
    for (const p of mine) {
      const name = fieldOf(p);
      const input = name && panel.querySelector(`[name="${CSS.escape(name)}"]`);
      if (input) fieldError(input, p.message, p.severity);
    }
    for (const [key, message] of Object.entries(notes)) {
      const [where, name] = key.split("\n");
      const input = where === noteScope() && panel.querySelector(`[name="${CSS.escape(name)}"]`);
      if (input) fieldError(input, message);
    }
    if (list) list.replaceChildren(...mine.map((x) => el("li", { class: `p-${x.severity}`, text: x.message })));
  }

  // What the panel's own checks refused (an add with a bad name, a trigger that is not JSON):
  // kept by the panel it is in and its control's name, and drawn again with the validator's
  // problems, so an answer that redraws the panel (a save's, a check's) does not wipe it
  // before it is read. A note goes when its control is edited.
  let notes = {};
  const noteScope = () => (edge ? `link:${edge.join(">")}` : (selected ? `step:${selected}` : "workflow"));
  function note(input, message) {
    notes[`${noteScope()}\n${input.name}`] = message;
    fieldError(input, message);
  }
  // In the capture phase, so a control's own listener can set its note again as it is edited.
  const unnote = (e) => {
    const name = e.target.name;
    if (!name || !(`${noteScope()}\n${name}` in notes)) return;
    delete notes[`${noteScope()}\n${name}`];
    e.target.classList.remove("bad");
    e.target.removeAttribute("aria-invalid");
    panel.querySelectorAll(`.wfe-field-error[data-for="${CSS.escape(name)}"]`).forEach((x) => x.remove());
  };
  panel.addEventListener("input", unnote, true);
  panel.addEventListener("change", unnote, true);

  function fieldError(input, message, severity = "error") {
    if (severity === "error") { input.classList.add("bad"); input.setAttribute("aria-invalid", "true"); }
    const label = input.closest("label, .wfe-input-row") || input;
    label.append(el("span", { class: `wfe-field-error p-${severity}`, role: "alert", "data-for": input.name || "", text: message }));
  }

  function linkPanel() {
    const [from, to] = edge;
    return el("div", {}, el("h2", { text: "Link" }),
              el("p", { text: `${to} runs after ${from}.` }),
              EDIT ? el("button", { type: "button", class: "danger", id: "wfe-unlink", onclick: () => disconnect(from, to) }, "Remove this link") : null);
  }

  function stepPanel(step) {
    const kind = kindOf(step);
    const box = el("div", { class: "wfe-step-form" });
    box.append(el("h2", {}, "Step ", el("code", { text: step.id })), el("p", { class: "hint wfe-uses-line", text: usesText(step) }));
    const described = handlerOf(step);
    if (described && described.description) box.append(el("p", { class: "hint wfe-description" }, ...md(described.description)));
    const row = stateOf(step.id);
    if (row) box.append(runRow(step, row));
    const idInput = field("Id", step.id, () => {}, { name: "step.id", pattern: STEP_ID.source });
    idInput.querySelector("input").addEventListener("change", (e) => {
      const id = e.target.value.trim();
      if (id === step.id) return;
      if (!STEP_ID.test(id) || find(id)) {
        note(e.target, `${id} cannot be a step id: letters, digits and _, not starting with a digit, and not another step's`);
        e.target.value = step.id;
        return;
      }
      undo.pop(); // the rename is one change of its own
      rename(step.id, id);
    });
    box.append(idInput);
    if (kind === "plugin") {
      const handler = handlerOf(step);
      const schema = handler && handler.input_schema;
      const values = step.with && typeof step.with === "object" ? step.with : {};
      if (schema && schema.properties && typeof step.with !== "string") {
        box.append(el("h3", { text: "Inputs" }), schemaFields(schema, values, (k, v) => {
          step.with = step.with && typeof step.with === "object" ? step.with : {};
          if (v === undefined) delete step.with[k]; else step.with[k] = v;
        }, "in"));
      } else {
        box.append(jsonField("Inputs (JSON, expressions allowed)", step.with, (v) => { step.with = v; }, "with"));
      }
    } else if (kind === "approval") {
      const message = typeof step.wait === "object" ? (step.wait.approval || {}).message : "";
      box.append(field("Message to the approver", message, (i) => { step.wait = { approval: { message: i.value } }; }, { name: "approval.message" }));
    } else if (kind === "connector" && statementOf(step)) {
      const given = step.with && typeof step.with === "object" ? step.with : {};
      const set = (key, v) => {
        step.with = step.with && typeof step.with === "object" ? step.with : {};
        if (v === undefined) delete step.with[key]; else step.with[key] = v;
      };
      box.append(el("label", {}, el("span", { text: "Statement (SQL; values as $1, $2 or ?, from the parameters)" }),
                     bind(el("textarea", { name: "sql", rows: "4", disabled: !EDIT }, given.sql || ""), (i) => set("sql", i.value))),
                 jsonField("Parameters (a JSON list, expressions allowed)", given.params, (v) => set("params", v), "params"));
    } else if (kind === "connector") {
      box.append(field("Method", step.method || "GET", (i) => { step.method = i.value.toUpperCase(); }, { name: "method" }),
                 field("Path", step.path, (i) => { step.path = i.value; }, { name: "path" }));
    } else if (kind === "wait" && step.wait && "sleep" in step.wait) {
      box.append(field("Wait for", step.wait.sleep, (i) => { step.wait = { sleep: i.value }; }, { name: "sleep" }));
    }
    box.append(field("Run only if (a condition)", step.if, (i) => { if (i.value.trim()) step.if = i.value; else delete step.if; },
                     { name: "if", placeholder: "${{ inputs.amount > 100 }}" }));
    if (kind !== "approval" && kind !== "wait") {
      box.append(field("For each item of", step.for_each, (i) => { if (i.value.trim()) step.for_each = i.value; else delete step.for_each; },
                       { name: "for_each", placeholder: "${{ inputs.items }}" }));
    }
    const needs = step.needs || [];
    box.append(el("h3", { text: "Runs after" }),
               needs.length ? el("ul", { class: "wfe-needs" }, ...needs.map((n) => el("li", {}, el("code", { text: n }),
                 EDIT ? el("button", { type: "button", class: "link", title: `remove the link from ${n}`, onclick: () => disconnect(n, step.id) }, "×") : null)))
                 : el("p", { class: "hint", text: EDIT ? "Nothing: drag from another step's dot onto this one." : "Nothing." }));
    box.append(preview(step));
    box.append(el("ul", { class: "problems", id: "wfe-step-problems" }));
    if (EDIT) box.append(el("button", { type: "button", class: "danger", onclick: () => removeStep(step.id) }, "Delete step"));
    return box;
  }

  function jsonField(labelText, value, apply, name) {
    const text = value === undefined ? "" : (typeof value === "string" ? value : JSON.stringify(value, null, 2));
    return el("label", {}, el("span", { text: labelText }),
              bind(el("textarea", { name, rows: "4", disabled: !EDIT }, text), (i) => {
                const raw = i.value.trim();
                if (!raw) return apply(undefined);
                try { apply(JSON.parse(raw)); i.classList.remove("bad"); } catch (_) { isExpr(raw) ? apply(raw) : i.classList.add("bad"); }
              }));
  }

  // What the step can take from the steps before it: their outputs (and fields, where the
  // handler says what it returns) and the run's inputs, as expressions to paste into a field.
  function preview(step) {
    const seen = new Set();
    const walk = (id) => {
      const s = find(id);
      for (const n of (s && s.step.needs) || []) { if (!seen.has(n)) { seen.add(n); walk(n); } }
    };
    walk(step.id);
    const chips = [];
    for (const id of seen) {
      const s = find(id);
      const handler = s && handlerOf(s.step);
      const out = handler && handler.output_schema && handler.output_schema.properties;
      const fields = out ? Object.keys(out).map((k) => `steps.${id}.output.${k}`) : [`steps.${id}.output`];
      chips.push(...fields);
    }
    for (const k of Object.keys(((doc.inputs || {}).properties) || {})) chips.push(`inputs.${k}`);
    const box = el("div", { class: "wfe-preview" }, el("h3", { text: "Receives" }));
    if (!chips.length) { box.append(el("p", { class: "hint", text: "Nothing from earlier steps yet." })); return box; }
    box.append(el("p", { class: "hint", text: "Click to put it into the field you were in:" }),
               el("div", { class: "wfe-chips" }, ...chips.map((c) => el("button", { type: "button", class: "wfe-chip", "data-expr": c,
                 onclick: () => paste(`\${{ ${c} }}`) }, ...dotted(c)))));
    return box;
  }

  // A long path breaks after its dots (steps.third_greeting.<wbr>output.<wbr>message), not
  // inside a name.
  const dotted = (path) => path.split(/(?<=\.)/).flatMap((part, i) => (i ? [el("wbr"), part] : [part]));

  let lastField = null;
  panel.addEventListener("focusin", (e) => { if (e.target.matches("input:not([type=checkbox]), textarea")) lastField = e.target; });
  function paste(text) {
    if (!EDIT || !lastField || !panel.contains(lastField)) return say("Click into a field first, then on what to put in it.");
    lastField.focus();
    lastField.value = text;
    lastField.dispatchEvent(new Event("input"));
  }

  function workflowPanel() {
    const box = el("div", {});
    box.append(el("h2", { text: "Workflow" }),
               field("Description", doc.description, (i) => { if (i.value) doc.description = i.value; else delete doc.description; }, { name: "description" }));
    box.append(el("h3", { text: "Inputs of a run" }), inputsEditor());
    box.append(el("h3", { text: "Outputs of a run" }), outputsEditor());
    box.append(el("h3", { text: "Triggers" }), triggersEditor());
    box.append(runSection());
    if (EDIT && digest) box.append(historySection());
    return box;
  }

  // The versions a save replaced, newest first; one written back is a save of its own (the
  // text it replaces is kept in turn), refused like any save if the file changed meanwhile.
  let versions = null;  // the kept versions once asked for (the panel is rebuilt often)
  function historySection() {
    const box = el("section", { class: "wfe-history" }, el("h3", { text: "Earlier versions" }));
    if (versions === null) {
      box.append(el("button", { type: "button", id: "wfe-history", onclick: async () => {
        const answer = await api("GET", `${fileUrl}/history`);
        versions = (answer.ok && answer.data.items) || [];
        showPanel();
      } }, "Show"));
      return box;
    }
    const list = el("ul", { class: "wfe-versions" }, ...versions.map((v) => el("li", {},
      el("span", { text: isoTime(v.at) }), " ",  // console.js's: one date form everywhere
      el("code", { class: "hint", text: v.digest.slice(0, 8) }), " ",
      el("button", { type: "button", class: "link wfe-restore", onclick: () => restoreVersion(v.id) }, "Restore"))));
    if (!versions.length) list.append(el("li", { class: "hint", text: "None yet: each save keeps the version it replaces." }));
    box.append(list);
    return box;
  }

  async function restoreVersion(id) {
    if (dirty() && !window.confirm("Restoring drops your unsaved changes. Go on?")) return;
    const answer = await api("POST", `${fileUrl}/restore`, { id, digest });
    if (!answer.ok) {
      if (answer.status === 409) $("wfe-reload").hidden = false;
      return say(((answer.data || {}).error || {}).message || `not restored (${answer.status})`, true);
    }
    await load();
    say("Restored; the version it replaced is kept too.");
  }

  function inputsEditor() {
    const schema = doc.inputs || {};
    const props = schema.properties || {};
    const req = new Set(schema.required || []);
    const list = el("div", { class: "wfe-inputs" });
    const save = (fn) => change(() => {
      doc.inputs = { type: "object", ...(doc.inputs || {}) };
      doc.inputs.properties = doc.inputs.properties || {};
      fn(doc.inputs);
      if (!Object.keys(doc.inputs.properties).length) delete doc.inputs;
      else if (doc.inputs.required && !doc.inputs.required.length) delete doc.inputs.required;
    });
    for (const [key, sub] of Object.entries(props)) {
      list.append(el("div", { class: "wfe-input-row" }, el("code", { text: key }),
        el("span", { class: "hint", text: (sub && sub.type) || "any" }),
        el("span", { class: "hint", text: req.has(key) ? "required" : "optional" }),
        EDIT ? el("button", { type: "button", class: "link", title: `remove input ${key}`, onclick: () => save((s) => {
          delete s.properties[key];
          s.required = (s.required || []).filter((k) => k !== key);
        }) }, "×") : null));
    }
    if (EDIT) {
      const name = el("input", { name: "new-input", placeholder: "name", size: "10" });
      const type = el("select", { name: "new-input-type" }, ...["string", "number", "integer", "boolean", "object", "array"].map((t) => el("option", { text: t })));
      const must = el("input", { type: "checkbox", name: "new-input-required" });
      list.append(el("div", { class: "wfe-input-row" }, name, type, el("label", { class: "inline" }, must, "required"),
        el("button", { type: "button", id: "wfe-add-input", onclick: () => {
          const key = name.value.trim();
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) return note(name, "An input's name: letters, digits and _.");
          save((s) => { s.properties[key] = { type: type.value }; if (must.checked) s.required = [...new Set([...(s.required || []), key])]; });
        } }, "Add input")));
    }
    return list;
  }

  // A run's outputs (specs/workflows.md §2): a name each, its value an expression over the
  // inputs and the steps' outputs, shown on the run's page when it succeeds.
  function outputsEditor() {
    const list = el("div", { class: "wfe-outputs" });
    const save = (fn) => change(() => {
      doc.outputs = { ...(doc.outputs || {}) };
      fn(doc.outputs);
      if (!Object.keys(doc.outputs).length) delete doc.outputs;
    });
    for (const [key, value] of Object.entries(doc.outputs || {})) {
      const text = typeof value === "string" ? value : JSON.stringify(value);
      list.append(el("div", { class: "wfe-input-row" }, el("code", { text: key }),
        bind(el("input", { name: `output.${key}`, value: text, disabled: !EDIT, placeholder: "${{ steps.ID.output }}" }),
             (i) => { doc.outputs = { ...(doc.outputs || {}), [key]: typeof value === "string" ? i.value : typed("json", i.value) }; }),
        EDIT ? el("button", { type: "button", class: "link", title: `remove output ${key}`, onclick: () => save((o) => { delete o[key]; }) }, "×") : null));
    }
    if (!Object.keys(doc.outputs || {}).length && !EDIT) list.append(el("p", { class: "hint", text: "None." }));
    if (EDIT) {
      const name = el("input", { name: "new-output", placeholder: "name", size: "10" });
      const value = el("input", { name: "new-output-value", placeholder: "${{ steps.ID.output }}" });
      list.append(el("div", { class: "wfe-input-row" }, name, value,
        el("button", { type: "button", id: "wfe-add-output", onclick: () => {
          const key = name.value.trim();
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) return note(name, "An output's name: letters, digits and _.");
          if (!value.value.trim()) return note(value, "An output's value: an expression, as ${{ steps.ID.output }}.");
          save((o) => { o[key] = value.value.trim(); });
        } }, "Add output")));
    }
    return list;
  }

  // What starts a run by itself (specs/workflows.md §5): a schedule, an event or a webhook.
  // Each trigger is edited as the JSON of its entry (its kind's keys, `inputs`, `filter`,
  // `timezone`, ...); a new one starts from its kind's required keys.
  const TRIGGER_KINDS = {
    cron: { label: "schedule (cron)", key: "cron", placeholder: "0 2 * * *" },
    event: { label: "event", key: "event", placeholder: "plugin.*.order" },
    webhook: { label: "webhook", key: "webhook", placeholder: "orders/new" },
  };
  function triggersEditor() {
    const list = el("div", { class: "wfe-triggers" });
    const triggers = Array.isArray(doc.triggers) ? doc.triggers : [];
    const save = (fn) => change(() => {
      doc.triggers = [...(Array.isArray(doc.triggers) ? doc.triggers : [])];
      fn(doc.triggers);
      if (!doc.triggers.length) delete doc.triggers;
    });
    triggers.forEach((trigger, index) => {
      const kind = Object.keys(TRIGGER_KINDS).find((k) => trigger && k in trigger) || "trigger";
      const area = el("textarea", { name: `trigger.${index}`, rows: "3", disabled: !EDIT, spellcheck: "false" },
                      JSON.stringify(trigger, null, 1));
      const holder = el("label", { class: "wfe-trigger-json" }, area);
      bind(area, (i) => {
        area.classList.remove("bad");
        area.removeAttribute("aria-invalid");
        holder.querySelectorAll(".wfe-field-error").forEach((e) => e.remove());
        let parsed;
        try { parsed = JSON.parse(i.value); } catch (_) { return note(area, "Not JSON yet: the trigger is kept as it was."); }
        doc.triggers = [...doc.triggers];
        doc.triggers[index] = parsed;
      });
      list.append(el("div", { class: "wfe-trigger" },
        el("div", { class: "wfe-input-row" }, el("code", { text: (trigger && trigger.name) || `#${index + 1}` }),
          el("span", { class: "hint", text: kind }),
          EDIT ? el("button", { type: "button", class: "link", title: `remove trigger ${(trigger && trigger.name) || index + 1}`,
                                onclick: () => save((t) => { t.splice(index, 1); }) }, "×") : null),
        holder));
    });
    if (!triggers.length && !EDIT) list.append(el("p", { class: "hint", text: "None: runs start by hand, from the CLI or the API." }));
    if (EDIT) {
      // The trigger being written survives a re-render of the panel (a save's answer can
      // come while it is typed): its fields are drawn from and kept in triggerDraft.
      const name = el("input", { name: "new-trigger", placeholder: "name", size: "10" });
      const kind = el("select", { name: "new-trigger-kind" },
                      ...Object.entries(TRIGGER_KINDS).map(([k, v]) => el("option", { value: k, text: v.label })));
      const what = el("input", { name: "new-trigger-value", placeholder: TRIGGER_KINDS.cron.placeholder });
      const secret = el("input", { name: "new-trigger-secret", placeholder: "secret name", size: "12", hidden: true });
      const shown = () => { what.placeholder = TRIGGER_KINDS[kind.value].placeholder; secret.hidden = kind.value !== "webhook"; };
      name.value = triggerDraft.name || ""; what.value = triggerDraft.value || ""; secret.value = triggerDraft.secret || "";
      if (triggerDraft.kind) kind.value = triggerDraft.kind;
      shown();
      const keep = () => { triggerDraft = { name: name.value, kind: kind.value, value: what.value, secret: secret.value }; };
      [name, what, secret].forEach((i) => i.addEventListener("input", keep));
      kind.addEventListener("change", () => { shown(); keep(); });
      list.append(el("div", { class: "wfe-input-row" }, name, kind, what, secret,
        el("button", { type: "button", id: "wfe-add-trigger", onclick: () => {
          const key = name.value.trim();
          if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(key)) return note(name, "A trigger's name: letters, digits, _ . and -.");
          if (!what.value.trim()) return note(what, `The ${TRIGGER_KINDS[kind.value].label}: as ${TRIGGER_KINDS[kind.value].placeholder}`);
          if (kind.value === "webhook" && !secret.value.trim()) return note(secret, "A webhook is signed with a secret: its name.");
          const entry = { name: key, [TRIGGER_KINDS[kind.value].key]: what.value.trim() };
          if (kind.value === "webhook") entry.secret = secret.value.trim();
          triggerDraft = {};
          save((t) => { t.push(entry); });
        } }, "Add trigger")));
    }
    return list;
  }

  let runValues = {};
  let triggerDraft = {};  // the trigger being written in the panel (triggerSection)
  function runSection() {
    const box = el("section", { class: "wfe-run" }, el("h3", { text: "Run" }));
    if (run) {
      box.append(el("p", {}, el("a", { href: `/workflows/runs/${run.id}`, text: `Run #${run.id}` }), " ",
                    el("span", { class: `badge t-${run.state}`, id: "wfe-run-state", text: run.state })));
      for (const row of run.steps.filter((r) => r.state === "waiting" && r.wait && r.wait.kind === "approval")) {
        box.append(approval(row));
      }
      if (run.error) box.append(el("p", { class: "error", text: run.error }));
    }
    if (!root.dataset.canRun) { box.append(el("p", { class: "hint", text: "Only an admin starts runs." })); return box; }
    box.append(schemaFields(doc.inputs || {}, runValues, (k, v) => { if (v === undefined) delete runValues[k]; else runValues[k] = v; }, "run"));
    box.querySelectorAll(".wfe-fields input, .wfe-fields select, .wfe-fields textarea").forEach((i) => { i.disabled = false; });
    box.append(el("button", { type: "button", id: "wfe-run", class: "primary", onclick: startRun,
                              disabled: dirty() || !digest, title: dirty() ? "Save first: a run uses the saved file" : "" }, "Run"));
    if (dirty() || !digest) box.append(el("p", { class: "hint", text: "Save first: a run uses the saved file." }));
    return box;
  }

  function approval(row) {
    return el("div", { class: "wfe-approval" }, el("p", { text: `${row.step}: ${(row.wait && row.wait.message) || "waiting for an approval"}` }),
              root.dataset.canRun ? el("button", { type: "button", class: "primary wfe-approve", "data-step": row.step, onclick: () => decide(row.step, true) }, "Approve") : null,
              root.dataset.canRun ? el("button", { type: "button", class: "danger", onclick: () => decide(row.step, false) }, "Reject") : null);
  }

  function runRow(step, row) {
    const box = el("div", { class: "wfe-run-row" }, el("h3", { text: "In this run" }),
                   el("p", {}, el("span", { class: `badge t-${row.state}`, text: row.state }), row.attempt ? ` attempt ${row.attempt}` : ""));
    if (row.error) box.append(el("p", { class: "error", text: row.error }));
    if (row.output !== null && row.output !== undefined) box.append(el("pre", { text: JSON.stringify(row.output, null, 2) }));
    if (row.state === "waiting" && row.wait && row.wait.kind === "approval") box.append(approval(row));
    return box;
  }

  // -- checking, saving, running ---------------------------------------------------------------

  // The problems list is aria-busy from a change until the check of the draft as it now is
  // has answered: its answer redraws the graph and the panel, which can move what is under
  // the pointer (a screen reader, and a test, wait for it).
  function check() {
    clearTimeout(timer);
    $("wfe-problems").setAttribute("aria-busy", "true");
    timer = setTimeout(async () => {
      timer = null;
      const ticket = ++checking;
      const answer = await api("POST", `${fileUrl}/validate`, { document: doc });
      if (ticket !== checking) return;  // a newer check is on its way
      if (answer.ok) showProblems(answer.data.problems);
      else showProblems([{ severity: "error", message: (answer.data && answer.data.error && answer.data.error.message) || `check failed (${answer.status})`, step: null }]);
    }, 250);
  }

  function showProblems(found) {
    problems = found;
    const list = $("wfe-problems");
    if (timer === null) list.setAttribute("aria-busy", "false");
    list.replaceChildren(...found.map((p) => el("li", { class: `p-${p.severity}`, "data-step": p.step || "" },
      p.step ? el("a", { href: "#", text: p.step, onclick: (e) => { e.preventDefault(); selected = p.step; edge = null; render(); showPanel(); } }) : null,
      p.step ? ": " : "", `${p.severity === "warning" ? "warning: " : ""}${p.path ? `${p.path}: ` : ""}${p.message}`)));
    if (!found.length) list.append(el("li", { class: "hint", text: "None: the validator accepts this workflow." }));
    const errors = found.filter((p) => p.severity === "error").length;
    const count = $("wfe-count");
    count.textContent = String(found.length);
    count.className = `badge ${errors ? "t-dead" : (found.length ? "t-queued" : "t-succeeded")}`;
    render();
    if (!typing()) showPanel(); else panelProblems();
    status();
  }

  function status() {
    const badge = $("wfe-status");
    const errors = problems.some((p) => p.severity === "error");
    const [text, cls] = !EDIT ? ["read-only", "t-cancelled"] : !digest ? ["new", "t-queued"]
      : dirty() ? ["unsaved changes", "t-queued"] : ["saved", "t-succeeded"];
    badge.textContent = text;
    badge.className = `badge ${cls}`;
    if (EDIT) {
      $("wfe-save").disabled = !dirty() || errors;
      $("wfe-undo").disabled = !undo.length;
      $("wfe-redo").disabled = !redo.length;
      $("wfe-delete").disabled = !selected && !edge;
    }
    const runButton = $("wfe-run");
    if (runButton) runButton.disabled = dirty() || !digest;
  }

  async function save() {
    say("saving…");
    const answer = await api("PUT", fileUrl, { document: doc, digest });
    if (answer.ok) {
      digest = answer.data.digest;
      saved = JSON.stringify(doc);
      versions = null;
      say(`Saved to ${answer.data.file}.`);
      $("wfe-reload").hidden = true;
      showProblems(answer.data.problems);
      showPanel();
      return;
    }
    const err = (answer.data && answer.data.error) || {};
    if (answer.status === 409) $("wfe-reload").hidden = false;
    if (err.problems) showProblems(err.problems);
    say(err.message || `not saved (${answer.status})`, true);
  }

  async function startRun() {
    const answer = await api("POST", `/api/v1/workflows/${encodeURIComponent(NAME)}/runs`, { inputs: runValues });
    if (!answer.ok) return say(((answer.data || {}).error || {}).message || `not started (${answer.status})`, true);
    say(`Run #${answer.data.id} started.`);
    $("wfe-message").dataset.run = String(answer.data.id);
    watch(answer.data.id);
  }

  async function watch(id) {
    const answer = await api("GET", `/api/v1/workflow-runs/${id}`);
    if (answer.ok) {
      run = answer.data;
      render();
      if (!typing()) showPanel();
      if (ENDED.includes(run.state) && $("wfe-message").dataset.run === String(id)) ranOut(run);
    }
    if (!answer.ok || !ENDED.includes(run.state)) setTimeout(() => watch(id), 700);
  }

  // The toolbar's "Run #N started." says how the run ended, once it has.
  function ranOut(ended) {
    const words = { succeeded: "succeeded", failed: "failed", cancelled: "was cancelled" }[ended.state] || ended.state;
    say(`Run #${ended.id} ${words}${ended.error ? `: ${ended.error}` : "."}`, ended.state !== "succeeded");
    delete $("wfe-message").dataset.run;
  }

  async function decide(step, approve) {
    const answer = await api("POST", `/api/v1/workflow-runs/${run.id}/approve`, { step, approve });
    if (!answer.ok) return say(((answer.data || {}).error || {}).message || "not decided", true);
    run = answer.data;
    render();
    showPanel();
    if (ENDED.includes(run.state) && $("wfe-message").dataset.run === String(run.id)) ranOut(run);
  }

  async function load() {
    const [file, pal] = await Promise.all([api("GET", fileUrl), api("GET", "/api/v1/workflow-palette")]);
    if (!file.ok) { say(((file.data || {}).error || {}).message || `cannot read the file (${file.status})`, true); return; }
    if (pal.ok) palette = pal.data;
    const parsed = file.data.document;
    doc = parsed && typeof parsed === "object" && !Array.isArray(parsed) ? parsed : { format: "omniflow/v1", name: NAME, steps: [] };
    digest = file.data.digest;
    saved = file.data.exists ? JSON.stringify(doc) : "";
    opened = JSON.stringify(doc);
    undo = []; redo = []; selected = null; edge = null; versions = null; notes = {};
    clearTimeout(timer);
    timer = null;
    checking += 1;  // a check of the draft before this load must not land on it
    layout();
    render();
    showPanel();
    showProblems(file.data.problems);
    const broken = file.data.exists && doc !== parsed;
    say(broken ? `${file.data.file} does not parse (see Problems): fix it by hand, or build it here — a save replaces it and keeps its text among the earlier versions.`
      : file.data.exists ? `${file.data.file}` : `New: Save writes ${file.data.file}.`, broken);
    $("wfe-reload").hidden = true;
  }

  // -- wiring ----------------------------------------------------------------------------------

  if (root.dataset.editable === "true") root.dataset.canRun = "true";
  root.classList.toggle("read-only", !EDIT);
  if (EDIT) {
    $("wfe-undo").addEventListener("click", () => restore(undo, redo));
    $("wfe-redo").addEventListener("click", () => restore(redo, undo));
    $("wfe-save").addEventListener("click", save);
    $("wfe-delete").addEventListener("click", () => {
      if (edge) disconnect(edge[0], edge[1]); else if (selected) removeStep(selected);
    });
    $("wfe-search").addEventListener("input", showPalette);
    document.addEventListener("keydown", (e) => {
      if (e.target.matches("input, textarea, select")) return;
      const key = e.key.toLowerCase();
      if ((e.ctrlKey || e.metaKey) && key === "z") { e.preventDefault(); e.shiftKey ? restore(redo, undo) : restore(undo, redo); }
      else if ((e.ctrlKey || e.metaKey) && key === "y") { e.preventDefault(); restore(redo, undo); }
      else if (key === "delete" || key === "backspace") {
        if (edge) disconnect(edge[0], edge[1]); else if (selected) removeStep(selected);
      }
    });
  } else {
    for (const b of root.querySelectorAll("[data-edit]")) b.hidden = true;
  }
  $("wfe-layout").addEventListener("click", () => { layout(); render(); });
  $("wfe-reload").addEventListener("click", () => {
    if (!unsaved() || window.confirm(`Reloading ${NAME} drops your unsaved changes. Reload?`)) load();
  });

  // Unsaved work is not dropped without a word: a link or form of the console asks first, and
  // a reload, a typed address or a closed tab get the browser's own question.
  let leaving = false;
  const leave = () => {
    if (!unsaved() || leaving) return true;
    leaving = window.confirm(`${NAME} has unsaved changes. Leave this page and drop them?`);
    return leaving;
  };
  document.addEventListener("click", (event) => {
    const a = event.target.closest && event.target.closest("a[href]");
    if (!a || event.defaultPrevented || event.button !== 0 || event.ctrlKey || event.metaKey
        || event.shiftKey || a.target === "_blank" || a.getAttribute("href").startsWith("#")) return;
    if (!leave()) event.preventDefault();
  }, true);
  document.addEventListener("submit", (event) => {
    if (!root.contains(event.target) && !leave()) event.preventDefault();
  }, true);
  window.addEventListener("beforeunload", (event) => {
    if (!unsaved() || leaving) return;
    event.preventDefault();
    event.returnValue = "";  // Chromium asks only when this is set
  });
  const live = document.getElementById("live-state");
  if (live) { live.textContent = "editor"; live.title = "This page checks as you edit and polls the run it started"; }
  load().then(() => { if (EDIT) showPalette(); });
})();
