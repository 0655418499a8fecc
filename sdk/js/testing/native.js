// The "omnicore:native" module for Node: the same functions the QuickJS runtime's C shim
// (runtime/omnicore_js.c) gives runtime/api.js, answered by the current TestHost instead of
// the wasm host. api.js itself is loaded unchanged, so a handler meets the same wrappers,
// conversions and OmniHostError statuses in `node --test` as in omnicore.
import { current } from "./state.js";

const NOT_FOUND = -1, DENIED = -2, INVALID = -3;
const LEVELS = ["trace", "debug", "info", "warn", "error"];
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const bytesOf = (v) => (typeof v === "string" ? encoder.encode(v)
  : v instanceof ArrayBuffer ? new Uint8Array(v.slice(0))
  : v instanceof Uint8Array ? new Uint8Array(v) : encoder.encode(String(v)));
const textOf = (v) => (typeof v === "string" ? v : decoder.decode(bytesOf(v)));

export function logWrite(level, message) {
  const host = current();
  if (level >= host.logLevel) host.logs.push({ level: LEVELS[level] ?? "info", message });
}

export function logEnabled(level) { return level >= current().logLevel; }

/** §4.2: a dotted key; strings verbatim, other values as compact JSON; "" = the section. */
export function configGet(key) {
  let value = current().config;
  if (key !== "") {
    for (const part of key.split(".")) {
      if (value === null || typeof value !== "object" || !Object.hasOwn(value, part)) return NOT_FOUND;
      value = value[part];
    }
  }
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function kvGet(key) {
  const kv = current().kv;
  return kv.has(key) ? new Uint8Array(kv.get(key)) : NOT_FOUND;
}

export function kvSet(key, value) { current().kv.set(key, bytesOf(value)); return 0; }

export function kvDelete(key) { return current().kv.delete(key) ? 1 : 0; }

/** [status, value]: the stored value must be a decimal integer, as on the host. */
export function kvIncr(key, delta) {
  const kv = current().kv;
  const old = kv.has(key) ? decoder.decode(kv.get(key)) : "0";
  if (!/^-?\d+$/.test(old)) return [INVALID, 0];
  const next = BigInt(old) + BigInt(delta);
  if (next > 2n ** 63n - 1n || next < -(2n ** 63n)) return [INVALID, 0];
  kv.set(key, encoder.encode(next.toString()));
  return [0, Number.isSafeInteger(Number(next)) ? Number(next) : next];
}

export function kvList(prefix) {
  return JSON.stringify([...current().kv.keys()].filter((k) => k.startsWith(prefix)).sort()
    .slice(0, 1000));
}

// Agent memory and vectors, in memory: recall matches any query word as a substring and ranks
// by importance plus cosine similarity; enough to unit-test a handler's logic (the real
// ranking, BM25 and recency, is the host's). Filters, dimensions, NaN and k are checked as on
// the host (specs/abi.md §4.4, §4.5).
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const validFilter = (f) => f === undefined || (isObject(f) && Object.values(f)
  .every((v) => ["string", "number", "boolean"].includes(typeof v)));
const matches = (metadata, filter) => Object.entries(filter ?? {})
  .every(([k, v]) => isObject(metadata) && metadata[k] === v);
const finiteList = (v) => Array.isArray(v) && v.length > 0 && v.every(Number.isFinite);
const floatsOf = (b) => Array.from(new Float32Array(bytesOf(b).buffer));

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

function parsed(text) {
  try { return JSON.parse(textOf(text)); } catch { return undefined; }
}

export function memRemember(tier, item) {
  const host = current();
  const m = parsed(item);
  const importance = m?.importance ?? 0.5;
  if (!isObject(m) || ![0, 1, 2].includes(tier) || typeof m.text !== "string" || !m.text.trim()
      || (m.metadata !== undefined && !isObject(m.metadata)) || typeof importance !== "number"
      || !(importance >= 0 && importance <= 1)
      || (m.vector !== undefined && !finiteList(m.vector))) return INVALID;
  const dim = host.memories.find((x) => x.vector)?.vector.length;
  if (m.vector !== undefined && dim !== undefined && m.vector.length !== dim) return INVALID;
  const id = (host.memories.at(-1)?.id ?? 0) + 1;
  host.memories.push({ id, tier, text: m.text, metadata: m.metadata ?? {}, importance,
    vector: m.vector ?? null, ttl_s: m.ttl_s ?? null, created_at: Date.now() / 1000 });
  return id;
}

export function memRecall(query) {
  const q = parsed(query);
  if (!isObject(q) || !validFilter(q.filter) || (q.vector !== undefined && !finiteList(q.vector))) {
    return INVALID;
  }
  const words = String(q.query ?? "").toLowerCase().split(/\s+/).filter(Boolean);
  const tiers = q.tiers ?? [0, 1, 2];
  const found = current().memories
    .filter((m) => tiers.includes(m.tier) && matches(m.metadata, q.filter)
      && (!words.length || words.some((w) => m.text.toLowerCase().includes(w))))
    .map((m) => ({ m, score: m.importance
      + (q.vector && m.vector && m.vector.length === q.vector.length ? cosine(q.vector, m.vector) : 0) }))
    .sort((a, b) => b.score - a.score)
    .slice(0, q.limit ?? 10);
  return JSON.stringify(found.map(({ m, score }) => ({ id: m.id, tier: m.tier, text: m.text,
    metadata: m.metadata, score, created_at: m.created_at })));
}

export function memForget(id) {
  const memories = current().memories;
  const at = memories.findIndex((m) => m.id === Number(id));
  if (at < 0) return 0;
  memories.splice(at, 1);
  return 1;
}

export function vecUpsert(collection, id, vector, metadata) {
  const vectors = current().vectors;
  const values = floatsOf(vector);
  const meta = textOf(metadata) === "" ? {} : parsed(metadata);
  if (!finiteList(values) || !isObject(meta)) return INVALID;
  const coll = vectors.get(collection) ?? new Map();
  const dim = coll.values().next().value?.vector.length;
  if (dim !== undefined && dim !== values.length) return INVALID;
  vectors.set(collection, coll);
  coll.set(id, { vector: values, metadata: meta });
  return 0;
}

// Errors are thrown with the host's message, as the runtime throws a §3.3 error block.
export function vecQuery(collection, vector, k, filter) {
  const coll = current().vectors.get(collection);
  if (coll === undefined) throw new Error(`NOT_FOUND: no vector collection '${collection}'`);
  const flt = textOf(filter) === "" ? undefined : parsed(filter);
  if (!validFilter(flt)) throw new Error("INVALID: the filter must be a JSON object of scalars");
  if (!(k >= 1 && k <= 1000)) throw new Error(`INVALID: k must be 1-1000, got ${k}`);
  const query = floatsOf(vector);
  const dim = coll.values().next().value?.vector.length;
  if (!finiteList(query) || (dim !== undefined && dim !== query.length)) {
    throw new Error(`INVALID: the vector must have ${dim} finite values`);
  }
  const hits = [...coll].filter(([, v]) => matches(v.metadata, flt))
    .map(([vid, v]) => ({ id: vid, score: cosine(query, v.vector), metadata: v.metadata }))
    .sort((a, b) => b.score - a.score)
    .slice(0, k);
  return JSON.stringify(hits);
}

export function vecSearch(collection, vector, k) { return vecQuery(collection, vector, k, ""); }

export function vecDelete(collection, id) {
  const coll = current().vectors.get(collection);
  if (coll === undefined) return NOT_FOUND;
  return coll.delete(id) ? 1 : 0;
}

export function tasksEnqueue(handler, payload, delayMs) {
  const host = current();
  if (host.handlers && !host.handlers.includes(handler)) return INVALID;
  const id = host.tasks.length + 1;
  host.tasks.push({ id, handler, payload: bytesOf(payload), delayMs: Number(delayMs),
    cancelled: false });
  return id;
}

export function tasksCancel(id) {
  const task = current().tasks.find((t) => t.id === Number(id) && !t.cancelled);
  if (!task) return 0;
  task.cancelled = true;
  return 1;
}

/** §4.7's response block: u32 LE head length, the JSON head, the body. */
export function httpRequest(request, body) {
  const host = current();
  const req = JSON.parse(textOf(request));
  if (typeof host.http !== "function") {
    throw new Error(`DENIED: ${req.url ?? req.connector} (the TestHost has no http function)`);
  }
  const res = host.http({ ...req, body: bytesOf(body) });
  const head = encoder.encode(JSON.stringify({ status: res.status ?? 200,
    headers: res.headers ?? {} }));
  const payload = bytesOf(res.body ?? "");
  const block = new Uint8Array(4 + head.length + payload.length);
  new DataView(block.buffer).setUint32(0, head.length, true);
  block.set(head, 4);
  block.set(payload, 4 + head.length);
  return block;
}

export function eventsPublish(topic, payload) {
  current().events.push({ topic, payload: bytesOf(payload) });
  return 0;
}

/** Exposed names answer their bytes (null: exposed but not set); any other is DENIED. */
export function secretsGet(name) {
  const secrets = current().secrets;
  if (!Object.hasOwn(secrets, name)) return DENIED;
  return secrets[name] === null ? NOT_FOUND : bytesOf(secrets[name]);
}

export function input() {
  const data = current().input;
  if (data === null) throw new TypeError("bytes() is only available during a handler call");
  return new Uint8Array(data);
}

export function utf8Encode(s) { return encoder.encode(s); }
export function utf8Decode(b) { return decoder.decode(bytesOf(b)); }
export function linked() { return 0x1ff; }
