// The "omnicore:native" module for Node: the functions the QuickJS runtime's C shim
// (runtime/omnicore_js.c) gives runtime/api.js, each answered by omnicore's test host (the
// capabilities' own code, host/omnicore/toolchains/testhost) through the capability's WIT
// function. api.js is loaded unchanged, so a handler meets the same wrappers, conversions and
// OmniHostError statuses in `node --test` as in omnicore; here the answers are turned into
// the shim's: a negative status, or a thrown "CODE: detail" for a function answering a block.
import { current, request } from "./channel.js";

const NOT_FOUND = -1, INVALID = -3;
const STATUS = { "not-found": -1, denied: -2, invalid: -3, quota: -4, unavailable: -5,
  "too-large": -6 };
const LEVELS = ["trace", "debug", "info", "warn", "error"];
const TIERS = ["working", "short-term", "long-term"];
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const bytesOf = (v) => (typeof v === "string" ? encoder.encode(v)
  : v instanceof ArrayBuffer ? new Uint8Array(v.slice(0))
  : v instanceof Uint8Array ? new Uint8Array(v) : encoder.encode(String(v)));
const textOf = (v) => (typeof v === "string" ? v : decoder.decode(bytesOf(v)));

/** `omnicore:plugin/<cap>#<fn>(...args)` on the current TestHost's host. */
function wit(cap, fn, ...args) {
  const host = current();
  const got = request({ op: "call", host: host.id, cap, fn, args }, host);
  if (typeof got?.trap === "string") throw new Error(`omnicore:${cap} ${fn} trapped: ${got.trap}`);
  return got.ok;
}

const codeOf = (err) => (typeof err === "string" ? err : err.code);

/** A result's ok side, `then(ok)`, or its error's status. */
function status(answer, then = (ok) => ok ?? 0) {
  return "err" in answer ? STATUS[codeOf(answer.err)] : then(answer.ok);
}

/** A result's ok side, or its error thrown as the shim throws an error block. */
function block(answer) {
  if (!("err" in answer)) return answer.ok;
  const err = answer.err;
  const code = codeOf(err).toUpperCase().replace("-", "_");
  throw new Error(`${code}: ${typeof err === "string" ? code.toLowerCase() : err.message}`);
}

const flag = (ok) => (ok ? 1 : 0);
const floats = (v) => Array.from(new Float32Array(bytesOf(v).buffer));
const integer = (n) => (typeof n === "bigint" || Number.isSafeInteger(n) ? n : Math.trunc(Number(n)));

export function logWrite(level, message) { wit("log", "write", LEVELS[level] ?? "info", textOf(message)); }
export function logEnabled(level) { return wit("log", "enabled", LEVELS[level] ?? "info"); }

export function configGet(key) { return wit("config", "get", String(key)) ?? NOT_FOUND; }

export function kvGet(key) { return status(wit("kv", "get", key), (v) => v ?? NOT_FOUND); }
export function kvSet(key, value) { return status(wit("kv", "set", key, bytesOf(value))); }
export function kvDelete(key) { return status(wit("kv", "delete", key), flag); }
export function kvList(prefix) { return status(wit("kv", "list", prefix), JSON.stringify); }

/** [status, value]: a value past 2^53 comes back as a bigint. */
export function kvIncr(key, delta) {
  const answer = wit("kv", "incr", key, integer(delta));
  return "err" in answer ? [STATUS[codeOf(answer.err)], 0] : [0, answer.ok];
}

export function memRemember(tier, item) {
  if (!(tier in TIERS)) return INVALID;
  return status(wit("memory", "remember", TIERS[tier], textOf(item)));
}
export function memRecall(query) { return status(wit("memory", "recall", textOf(query))); }
export function memForget(id) { return status(wit("memory", "forget", integer(id)), flag); }

export function vecUpsert(collection, id, vector, metadata) {
  return status(wit("vectors", "upsert", collection, id, floats(vector), textOf(metadata)));
}
export function vecQuery(collection, vector, k, filter) {
  return block(wit("vectors", "search", collection, floats(vector), Number(k), textOf(filter)));
}
export function vecSearch(collection, vector, k) { return vecQuery(collection, vector, k, ""); }
export function vecDelete(collection, id) { return status(wit("vectors", "delete", collection, id), flag); }

export function tasksEnqueue(handler, payload, delayMs) {
  return status(wit("tasks", "enqueue", handler, bytesOf(payload), integer(delayMs)));
}
export function tasksCancel(id) { return status(wit("tasks", "cancel", integer(id)), flag); }

/** §4.7's response block: u32 LE head length, the JSON head, the body. */
export function httpRequest(req, body) {
  const res = block(wit("http", "request", textOf(req), bytesOf(body)));
  const head = encoder.encode(JSON.stringify({ status: res.status,
    headers: Object.fromEntries(res.headers) }));
  const out = new Uint8Array(4 + head.length + res.body.length);
  new DataView(out.buffer).setUint32(0, head.length, true);
  out.set(head, 4);
  out.set(res.body, 4 + head.length);
  return out;
}

export function eventsPublish(topic, payload) { return status(wit("events", "publish", topic, bytesOf(payload))); }

export function secretsGet(name) { return status(wit("secrets", "get", name)); }

export function mcpProgress(progress, total, message) {
  return wit("mcp", "progress", progress, total, message) ? 0 : -1;
}
export function mcpAsk(req) { return block(wit("mcp", "ask", textOf(req))); }

export function sqlQuery(conn, req) { return block(wit("sql", "query", textOf(conn), textOf(req))); }
export function sqlExecute(conn, req) { return block(wit("sql", "execute", textOf(conn), textOf(req))); }
export function sqlBegin(conn) { return status(wit("sql", "begin", textOf(conn))); }
export function sqlCommit(tx) { return status(wit("sql", "commit", integer(tx))); }
export function sqlRollback(tx) { return status(wit("sql", "rollback", integer(tx))); }

export function redisCommand(conn, req) { return block(wit("redis", "command", textOf(conn), textOf(req))); }

export function input() {
  const data = current().input;
  if (data === null) throw new TypeError("bytes() is only available during a handler call");
  return new Uint8Array(data);
}

export function utf8Encode(s) { return encoder.encode(s); }
export function utf8Decode(b) { return decoder.decode(bytesOf(b)); }
export function linked() { return 0xfff; }
