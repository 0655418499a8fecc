// The "omnicore:native" module for Node: the same functions the QuickJS runtime's C shim
// (runtime/omnicore_js.c) gives runtime/api.js, answered by the current TestHost instead of
// the wasm host. api.js itself is loaded unchanged, so a handler meets the same wrappers,
// conversions and OmniHostError statuses in `node --test` as in omnicore.
import { readFileSync } from "node:fs";
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
export function linked() { return 0xfff; }

// -- omnicore:mcp: a unit test has no MCP client: progress reaches nobody, nobody answers --

export function mcpProgress(_progress, _total, _message) { return -1; }

export function mcpAsk(_request) {
  throw new Error("UNAVAILABLE: no MCP client waits on this call (a unit test)");
}

// -- omnicore:sql: canned answers from TestHost.sql; omnicore:redis: an in-memory Redis -----

/** Cells and parameters as the host reads them: tagged objects become their values. */
function readValue(v) {
  if (v === null || typeof v !== "object") return v;
  const [tag] = Object.keys(v);
  if (tag === "$bytes") return Uint8Array.from(atob(v.$bytes), (c) => c.charCodeAt(0));
  return tag === "$json" ? { $json: v.$json } : v;
}

function writeCell(v) {
  if (v instanceof Uint8Array) return { $bytes: btoa(String.fromCharCode(...v)) };
  if (v instanceof Date) return { $timestamp: v.toISOString() };
  if (v !== null && typeof v === "object" && typeof v.toJSON === "function") return v.toJSON();
  return v;
}

function sqlRun(conn, request, query) {
  const host = current();
  const req = JSON.parse(textOf(request));
  const call = { connector: textOf(conn), sql: req.sql, params: (req.params ?? []).map(readValue),
    tx: req.tx ?? null, query };
  if (call.tx !== null && host.sqlOpen.get(call.tx) !== call.connector) {
    throw new Error(`INVALID: transaction ${call.tx} is not open on connector ${call.connector}`);
  }
  host.sqlCalls.push(call);
  if (typeof host.sql !== "function") {
    throw new Error(`UNAVAILABLE: connector ${call.connector}: the TestHost has no sql function`);
  }
  const answer = host.sql(call) ?? {};
  if (!query) return JSON.stringify({ rows_affected: answer.rows_affected ?? 0,
    ...(answer.last_insert_id === undefined ? {} : { last_insert_id: answer.last_insert_id }) });
  // Rows may be given as objects (keys are the columns) or as arrays beside `columns`.
  const rows = answer.rows ?? [];
  let columns = answer.columns ?? (rows.length && !Array.isArray(rows[0])
    ? Object.keys(rows[0]) : []);
  // Made the host's shape ({name, type} per column, one value per column in each row: a
  // plugin tested on another would fail live); a test's answer that cannot be, fails it.
  columns = columns.map((c) => {
    const name = typeof c === "string" ? c : c?.name;
    if (typeof name !== "string") {
      throw new TypeError(`TestHost sql: column ${JSON.stringify(c)} has no name`);
    }
    return { name, type: typeof c?.type === "string" ? c.type : "" };
  });
  const values = rows.map((r) => (Array.isArray(r) ? r : columns.map((c) => r[c.name])));
  for (const r of values) {
    if (r.length !== columns.length) {
      throw new TypeError(`TestHost sql: the row ${JSON.stringify(r)} has ${r.length} values `
        + `for ${columns.length} columns`);
    }
  }
  return JSON.stringify({ columns, rows: values.map((r) => r.map(writeCell)) });
}

export function sqlQuery(conn, request) { return sqlRun(conn, request, true); }
export function sqlExecute(conn, request) { return sqlRun(conn, request, false); }

export function sqlBegin(conn) {
  const host = current();
  const id = ++host.sqlNext;
  host.sqlOpen.set(id, textOf(conn));
  host.sqlCalls.push({ connector: textOf(conn), sql: "BEGIN", params: [], tx: id, query: false });
  return id;
}

function endTx(tx, what) {
  const host = current();
  if (!host.sqlOpen.has(tx)) return NOT_FOUND;
  host.sqlCalls.push({ connector: host.sqlOpen.get(tx), sql: what, params: [], tx, query: false });
  host.sqlOpen.delete(tx);
  return 0;
}

export function sqlCommit(tx) { return endTx(Number(tx), "COMMIT"); }
export function sqlRollback(tx) { return endTx(Number(tx), "ROLLBACK"); }

/** specs/abi.md §4.11's commands, `name: [least args, most args or null, keys]`, read from
 *  the host's answers (sdk/contract/host.json, beside this SDK in a checkout and in omnicore's
 *  wheel): anything else is DENIED, as on the host. */
const REDIS_COMMANDS = JSON.parse(readFileSync(
  new URL("../../contract/host.json", import.meta.url), "utf8")).redis.commands;
const WRONGTYPE = "INVALID: WRONGTYPE Operation against a key holding the wrong kind of value";

function redisInt(s) {
  if (!/^-?\d+$/.test(s)) throw new Error("INVALID: value is not an integer or out of range");
  return Number(s);
}

function redisExec(host, cmd, args) {
  if (args.length < 1) throw new Error("INVALID: wrong number of arguments");
  const db = host.redis, ttl = host.redisTtl, prefix = host.redisPrefix;
  const key = prefix + args[0];
  const typed = (kind) => {
    const v = db.get(key);
    if (v === undefined) return undefined;
    if ((kind === "string") !== (typeof v === "string") || (kind !== "string" && !(v instanceof kind))) {
      throw new Error(WRONGTYPE);
    }
    return v;
  };
  const keep = (v, empty) => { if (empty) { db.delete(key); ttl.delete(key); } else db.set(key, v); };
  const add = (by) => {
    const n = redisInt(typed("string") ?? "0") + by;
    db.set(key, String(n));
    return n;
  };
  switch (cmd) {
    case "GET": return typed("string") ?? null;
    case "GETDEL": { const v = typed("string") ?? null; keep(null, true); return v; }
    case "SET": case "SETNX": {
      if (args.length < 2) throw new Error("INVALID: wrong number of arguments");
      let nx = cmd === "SETNX", xx = false, keepTtl = false, ex = null;
      for (let i = 2; i < args.length; i++) {
        const o = args[i].toUpperCase();
        if (o === "NX") nx = true;
        else if (o === "XX") xx = true;
        else if (o === "KEEPTTL") keepTtl = true;
        else if (o === "EX" || o === "PX") {
          const n = redisInt(args[++i] ?? "");
          ex = o === "EX" ? n : Math.ceil(n / 1000);
        } else throw new Error("INVALID: syntax error");
      }
      const exists = db.has(key);
      if ((nx && exists) || (xx && !exists)) return cmd === "SETNX" ? 0 : null;
      db.set(key, args[1]);
      if (ex !== null) ttl.set(key, ex);
      else if (!keepTtl) ttl.delete(key);
      return cmd === "SETNX" ? 1 : "OK";
    }
    case "MGET": return args.map((a) => { const v = db.get(prefix + a); return typeof v === "string" ? v : null; });
    case "DEL": case "EXISTS": {
      let n = 0;
      for (const a of args) {
        if (db.has(prefix + a)) { n++; if (cmd === "DEL") { db.delete(prefix + a); ttl.delete(prefix + a); } }
      }
      return n;
    }
    case "INCR": return add(1);
    case "DECR": return add(-1);
    case "INCRBY": return add(redisInt(args[1] ?? ""));
    case "DECRBY": return add(-redisInt(args[1] ?? ""));
    case "EXPIRE": case "PEXPIRE": {
      let secs = redisInt(args[1] ?? "");
      if (cmd === "PEXPIRE") secs = Math.ceil(secs / 1000);
      if (!db.has(key)) return 0;
      if (secs <= 0) keep(null, true); else ttl.set(key, secs);
      return 1;
    }
    case "TTL": case "PTTL": {
      if (!db.has(key)) return -2;
      if (!ttl.has(key)) return -1;
      return cmd === "TTL" ? ttl.get(key) : ttl.get(key) * 1000;
    }
    case "PERSIST": return ttl.delete(key) ? 1 : 0;
    case "PUBLISH":
      host.events.push({ topic: `redis:${key}`, payload: encoder.encode(args[1] ?? "") });
      return 0;
  }
  if (cmd.startsWith("H")) {
    const h = typed(Map) ?? new Map();
    try {
      switch (cmd) {
        case "HGET": return h.get(args[1]) ?? null;
        case "HEXISTS": return h.has(args[1]) ? 1 : 0;
        case "HLEN": return h.size;
        case "HGETALL": return Object.fromEntries(h);
        case "HSET": {
          if (args.length < 3 || args.length % 2 === 0) throw new Error("INVALID: wrong number of arguments");
          let n = 0;
          for (let i = 1; i < args.length; i += 2) { if (!h.has(args[i])) n++; h.set(args[i], args[i + 1]); }
          return n;
        }
        case "HDEL": return args.slice(1).filter((f) => h.delete(f)).length;
        default: { // HINCRBY
          const n = redisInt(h.get(args[1]) ?? "0") + redisInt(args[2] ?? "");
          h.set(args[1], String(n));
          return n;
        }
      }
    } finally { keep(h, h.size === 0); }
  }
  if (cmd.startsWith("S")) {
    const set = typed(Set) ?? new Set();
    try {
      switch (cmd) {
        case "SADD": return args.slice(1).filter((m) => !set.has(m) && set.add(m)).length;
        case "SREM": return args.slice(1).filter((m) => set.delete(m)).length;
        case "SISMEMBER": return set.has(args[1]) ? 1 : 0;
        case "SCARD": return set.size;
        default: return [...set].sort();
      }
    } finally { keep(set, set.size === 0); }
  }
  let list = typed(Array) ?? [];
  try {
    const span = () => {
      const n = list.length;
      const norm = (i) => Math.max(i < 0 ? n + i : i, 0);
      const a = norm(redisInt(args[1] ?? "")), b = Math.min(norm(redisInt(args[2] ?? "")), n - 1);
      return a > b ? [0, 0] : [a, b + 1];
    };
    switch (cmd) {
      case "LPUSH": for (const v of args.slice(1)) list.unshift(v); return list.length;
      case "RPUSH": list.push(...args.slice(1)); return list.length;
      case "LPOP": return list.shift() ?? null;
      case "RPOP": return list.pop() ?? null;
      case "LLEN": return list.length;
      case "LRANGE": return list.slice(...span());
      default: list = list.slice(...span()); return "OK"; // LTRIM
    }
  } finally { keep(list, list.length === 0); }
}

export function redisCommand(conn, request) {
  const host = current();
  const req = JSON.parse(textOf(request));
  const cmd = String(req.cmd ?? "").toUpperCase();
  if (!Object.hasOwn(REDIS_COMMANDS, cmd)) {
    throw new Error(`DENIED: redis command '${cmd}' is not allowed`);
  }
  const given = req.args ?? [];
  if (!Array.isArray(given)) throw new Error("INVALID: args must be an array");
  const [least, most] = REDIS_COMMANDS[cmd];
  if (given.length < least || (most !== null && given.length > most)) {
    throw new Error(`INVALID: ${cmd} takes ${least}${most === least ? "" : most === null
      ? " or more" : ` to ${most}`} arguments, got ${given.length}`);
  }
  const args = given.map((a, i) => {
    if (typeof a === "string" || typeof a === "number") return String(a);
    if (a !== null && typeof a === "object" && typeof a.$bytes === "string") {
      return decoder.decode(readValue(a));
    }
    throw new Error(`INVALID: args[${i}] must be a string, an integer or bytes`);
  });
  // Values are kept as text (bytes arguments decoded as UTF-8): the fake is for logic, not
  // for binary payloads.
  return JSON.stringify(redisExec(host, cmd, args));
}
