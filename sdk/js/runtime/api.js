// The "omnicore" module every JS/TS plugin imports (types: sdk/js/index.d.ts).
// Built into the runtime; thin wrappers over the host functions of specs/abi.md §4 that turn
// status codes into thrown OmniHostError and bytes into strings/JSON where the spec says so.
import * as native from "omnicore:native";

const STATUS = { [-1]: "NOT_FOUND", [-2]: "DENIED", [-3]: "INVALID", [-4]: "QUOTA",
  [-5]: "UNAVAILABLE", [-6]: "TOO_LARGE" };

/** A host function answered with a negative status (specs/abi.md §3.1). */
export class OmniHostError extends Error {
  constructor(fn, status, detail) {
    const name = STATUS[status] || `STATUS_${status}`;
    super(`${fn} failed: ${name}${detail ? ` (${detail})` : ""}`);
    this.name = "OmniHostError";
    this.status = status;
    this.code = name;
  }
}

/** The handler's input was not what it expects; the message says what to send instead. */
export class InputError extends Error {
  constructor(message) {
    super(message);
    this.name = "InputError";
  }
}

function check(fn, status, detail) {
  if (typeof status === "number" && status < 0) throw new OmniHostError(fn, status, detail);
  return status;
}

const CODES = Object.fromEntries(Object.entries(STATUS).map(([status, code]) => [code, Number(status)]));

// A host function that answers with a block (specs/abi.md §3.3) refuses with an error block,
// "CODE: detail", which the native layer throws as it is: the same OmniHostError, with its
// .code, as every status-returning call throws.
function block(fn, call) {
  try {
    return call();
  } catch (e) {
    const m = /^([A-Z_]+): ([\s\S]*)$/.exec(e instanceof Error ? e.message : "");
    if (m && m[1] in CODES) throw new OmniHostError(fn, CODES[m[1]], m[2]);
    throw e;
  }
}

const encode = (s) => native.utf8Encode(String(s));
const decode = (b) => native.utf8Decode(b);
const toBytes = (v) => (typeof v === "string" ? v : v instanceof Uint8Array || v instanceof ArrayBuffer ? v
  : JSON.stringify(v));

/** The raw bytes of the current handler input (the handler itself receives them as a string). */
export function bytes() { return native.input(); }

/** Parse JSON input; throws InputError("invalid JSON input: ...") on malformed input. */
export function json(input) {
  const text = typeof input === "string" ? input : decode(input);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`invalid JSON input: ${text.length ? e.message : "empty input"}`);
  }
}

const LEVELS = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };
const fmt = (args) => args.map((a) => (typeof a === "string" ? a : a instanceof Error ? String(a)
  : JSON.stringify(a))).join(" ");

export const log = {
  write(level, ...args) {
    const n = typeof level === "number" ? level : LEVELS[level] ?? 2;
    native.logWrite(n, fmt(args));
  },
  enabled(level) { return native.logEnabled(typeof level === "number" ? level : LEVELS[level] ?? 2); },
  trace(...a) { if (native.logEnabled(0)) native.logWrite(0, fmt(a)); },
  debug(...a) { if (native.logEnabled(1)) native.logWrite(1, fmt(a)); },
  info(...a) { native.logWrite(2, fmt(a)); },
  warn(...a) { native.logWrite(3, fmt(a)); },
  error(...a) { native.logWrite(4, fmt(a)); },
};

export const config = {
  /** The value at `key` as text (strings verbatim, other values as JSON), or `fallback`. */
  get(key, fallback = undefined) {
    const r = native.configGet(String(key));
    if (r === -1) return fallback;
    return check("config.get", r, key);
  },
  /** The value at `key` (dotted keys walk objects) with its JSON type; `fallback` if absent. */
  value(key, fallback = undefined) {
    // From the whole section, not get(): get() returns strings verbatim, so "42" and 42
    // would be indistinguishable.
    let v = config.all();
    for (const part of String(key).split(".").filter((p) => p !== "")) {
      if (v === null || typeof v !== "object" || !Object.hasOwn(v, part)) return fallback;
      v = v[part];
    }
    return v;
  },
  /** The whole config section as an object. */
  all() { return JSON.parse(config.get("", "{}")); },
};

export const kv = {
  get(key) { const r = native.kvGet(String(key)); return r === -1 ? null : check("kv.get", r, key); },
  getText(key) { const r = kv.get(key); return r === null ? null : decode(r); },
  getJSON(key) { const r = kv.get(key); return r === null ? null : JSON.parse(decode(r)); },
  set(key, value) { check("kv.set", native.kvSet(String(key), toBytes(value)), key); },
  delete(key) { return check("kv.delete", native.kvDelete(String(key)), key) === 1; },
  // A number delta answers a number, a bigint delta a bigint (index.d.ts types it so). Past
  // 2^53 a number cannot hold the stored value exactly: that is a RangeError rather than a
  // silently rounded count (the add itself is done; kv.incr(key, 0n) reads it exactly).
  incr(key, delta = 1) {
    const [status, value] = native.kvIncr(String(key), delta);
    check("kv.incr", status, key);
    if (typeof delta === "bigint") return BigInt(value);
    if (typeof value === "bigint" || !Number.isSafeInteger(value)) {
      throw new RangeError(`kv.incr(${JSON.stringify(String(key))}): the value ${value} is beyond ` +
        "2^53, past what a number holds exactly; pass a bigint delta (1n) to read it");
    }
    return value;
  },
  list(prefix = "") { return JSON.parse(check("kv.list", native.kvList(String(prefix)), prefix)); },
};

export const Tier = Object.freeze({ WORKING: 0, SHORT: 1, LONG: 2 });

// JSON.stringify writes NaN and Infinity as null; the host would refuse the vector for it,
// but this names the cause.
const finite = (fn, values) => {
  if (values === undefined) return undefined;
  const list = Array.from(values);
  if (!list.every((v) => typeof v === "number" && Number.isFinite(v))) {
    throw new OmniHostError(fn, -3, "vector values must be finite numbers");
  }
  return list;
};

export const memory = {
  /** Options: metadata (object, matched by recall's filter), importance (0..1, default 0.5),
   *  vector (an embedding of the text), ttl_s (lifetime instead of the tier's). */
  remember(tier, text, { metadata, ttl_s, importance, vector } = {}) {
    const item = { text };
    if (metadata !== undefined) item.metadata = metadata;
    if (ttl_s !== undefined) item.ttl_s = ttl_s;
    if (importance !== undefined) item.importance = importance;
    if (vector !== undefined) item.vector = finite("memory.remember", vector);
    return check("memory.remember", native.memRemember(tier, JSON.stringify(item)));
  },
  /** Options: tiers, limit (10), filter (metadata equality), vector (rank by cosine too). */
  recall(query, { tiers, limit, filter, vector } = {}) {
    const q = { query };
    if (tiers !== undefined) q.tiers = tiers;
    if (limit !== undefined) q.limit = limit;
    if (filter !== undefined) q.filter = filter;
    if (vector !== undefined) q.vector = finite("memory.recall", vector);
    return JSON.parse(check("memory.recall", native.memRecall(JSON.stringify(q))));
  },
  forget(id) { return check("memory.forget", native.memForget(id)) === 1; },
};

const f32 = (v) => new Uint8Array((v instanceof Float32Array ? v : Float32Array.from(v)).buffer);

export const vectors = {
  upsert(collection, id, vector, metadata) {
    const meta = metadata === undefined ? "" : JSON.stringify(metadata);
    check("vectors.upsert", native.vecUpsert(String(collection), String(id), f32(vector), meta),
      collection);
  },
  search(collection, vector, k = 10) {
    return JSON.parse(block("vectors.search", () => native.vecSearch(String(collection), f32(vector), k)));
  },
  /** search() keeping only vectors whose metadata equals every key of `filter`. */
  query(collection, vector, k = 10, filter = {}) {
    return JSON.parse(block("vectors.query",
      () => native.vecQuery(String(collection), f32(vector), k, JSON.stringify(filter))));
  },
  delete(collection, id) {
    return check("vectors.delete", native.vecDelete(String(collection), String(id)), collection) === 1;
  },
};

export const tasks = {
  enqueue(handler, payload = "", { delayMs = 0 } = {}) {
    return check("tasks.enqueue", native.tasksEnqueue(String(handler), toBytes(payload), delayMs),
      handler);
  },
  cancel(id) { return check("tasks.cancel", native.tasksCancel(id)) === 1; },
};

/** A response of omnicore:http.request (specs/abi.md §4.7). */
export class HttpResponse {
  constructor(status, headers, body) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }
  get ok() { return this.status >= 200 && this.status < 300; }
  text() { return decode(this.body); }
  json() { return JSON.parse(decode(this.body)); }
}

export const http = {
  /** `req`: {method, url | connector+path, headers?, timeout_ms?}; `body`: string or bytes. */
  request(req, body = "") {
    const answer = block("http.request", () => native.httpRequest(JSON.stringify(req), body));
    const view = new DataView(answer.buffer, answer.byteOffset, answer.byteLength);
    const headLen = view.getUint32(0, true);
    const head = JSON.parse(decode(answer.subarray(4, 4 + headLen)));
    return new HttpResponse(head.status, head.headers || {}, answer.slice(4 + headLen));
  },
  get(url, headers = {}) { return http.request({ method: "GET", url, headers }); },
  post(url, body, headers = {}) { return http.request({ method: "POST", url, headers }, toBytes(body)); },
  connector(name, method, path, body = "", headers = {}) {
    return http.request({ method, connector: name, path, headers }, toBytes(body));
  },
};

export const events = {
  publish(topic, payload = "") {
    check("events.publish", native.eventsPublish(String(topic), toBytes(payload)), topic);
  },
};

export const secrets = {
  get(name) { const r = native.secretsGet(String(name)); return r === -1 ? null : check("secrets.get", r, name); },
  getText(name) { const r = secrets.get(name); return r === null ? null : decode(r); },
};

// -- omnicore:sql and omnicore:redis (specs/abi.md §4.10, §4.11) -----------------------------

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
function b64encode(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63]
      + (i + 1 < bytes.length ? B64[(n >> 6) & 63] : "=") + (i + 2 < bytes.length ? B64[n & 63] : "=");
  }
  return out;
}
function b64decode(text) {
  const clean = text.replace(/=+$/, "");
  const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
  let acc = 0, bits = 0, j = 0;
  for (const ch of clean) {
    const v = B64.indexOf(ch);
    if (v < 0) throw new OmniHostError("sql", -3, `invalid base64 character ${JSON.stringify(ch)}`);
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) { bits -= 8; out[j++] = (acc >> bits) & 255; }
  }
  return out;
}

/** A typed SQL value for what plain JS values do not say (specs/abi.md §4.10). */
export class SqlValue {
  constructor(tag, value) { this.tag = tag; this.value = value; }
  toJSON() { return { [this.tag]: this.value }; }
}
const isBytes = (v) => v instanceof Uint8Array || v instanceof ArrayBuffer;
const asU8 = (v) => (v instanceof ArrayBuffer ? new Uint8Array(v) : v);

function sqlParam(v, i) {
  if (v === null || v === undefined) return null;
  if (v instanceof SqlValue) return v.toJSON();
  if (isBytes(v)) return { $bytes: b64encode(asU8(v)) };
  if (v instanceof Date) return { $timestamp: v.toISOString() };
  if (typeof v === "bigint") return { $decimal: v.toString() };
  if (typeof v === "number" && !Number.isFinite(v)) {
    throw new OmniHostError("sql", -3, `params[${i}]: ${v} is not a SQL value`);
  }
  if (typeof v === "object") {
    throw new OmniHostError("sql", -3, `params[${i}]: wrap objects and arrays in sql.json()`);
  }
  return v;
}

function sqlCell(v) {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
  if ("$bytes" in v) return b64decode(v.$bytes);
  if ("$json" in v) return v.$json;
  for (const tag of ["$timestamp", "$date", "$time", "$decimal"]) if (tag in v) return v[tag];
  return v;
}

function sqlRequest(stmt, params, tx) {
  if (typeof stmt !== "string") throw new TypeError("the statement must be a string constant");
  const req = { sql: stmt, params: Array.from(params, sqlParam) };
  if (tx !== undefined) req.tx = tx;
  return JSON.stringify(req);
}

// A tagged template (db.query`... where sku = ${sku}`) is the statement's text with a
// placeholder where each value was, and its values the params: the text is the source's own
// literal parts, so no value can become SQL. Template strings arrays are sealed (frozen under
// Node; QuickJS-ng, the runtime plugins run on, leaves their `length` writable, so they are
// never frozen there) and carry `raw`; a plain string or array is not one.
const isTemplate = (s) => Array.isArray(s) && Object.isSealed(s) && Array.isArray(s.raw);
function statementOf(conn, stmt, rest) {
  if (!isTemplate(stmt)) return [stmt, rest[0] ?? []];
  let text = stmt[0];
  for (let i = 1; i < stmt.length; i++) text += (conn.placeholders === "?" ? "?" : `$${i}`) + stmt[i];
  return [text, rest];
}

function runQuery(conn, stmt, params, tx) {
  const out = JSON.parse(block("sql.query", () => native.sqlQuery(conn, sqlRequest(stmt, params, tx))));
  const names = out.columns.map((c) => c.name);
  const rows = out.rows.map((cells) => Object.fromEntries(cells.map((c, i) => [names[i], sqlCell(c)])));
  return { columns: out.columns, rows, values: out.rows.map((cells) => cells.map(sqlCell)) };
}

function runExecute(conn, stmt, params, tx) {
  return JSON.parse(block("sql.execute", () => native.sqlExecute(conn, sqlRequest(stmt, params, tx))));
}

class SqlTransaction {
  constructor(conn, id, placeholders) {
    this.connector = conn; this.id = id; this.open = true; this.placeholders = placeholders;
  }
  query(stmt, ...rest) { return runQuery(this.connector, ...statementOf(this, stmt, rest), this.id); }
  execute(stmt, ...rest) { return runExecute(this.connector, ...statementOf(this, stmt, rest), this.id); }
  commit() {
    if (!this.open) throw new OmniHostError("sql.commit", -1, "the transaction has ended");
    this.open = false;
    check("sql.commit", native.sqlCommit(this.id), this.connector);
  }
  rollback() {
    if (!this.open) return;
    this.open = false;
    check("sql.rollback", native.sqlRollback(this.id), this.connector);
  }
}

class SqlConnection {
  constructor(name, placeholders) { this.name = name; this.placeholders = placeholders; }
  /** Rows of a statement: {columns, rows (objects by column name), values (arrays)}.
   *  query("... $1", [v]) or the tag query`... ${v}` (each value a parameter). */
  query(stmt, ...rest) { return runQuery(this.name, ...statementOf(this, stmt, rest)); }
  /** {rows_affected, last_insert_id?} of a statement that changes rows (as query). */
  execute(stmt, ...rest) { return runExecute(this.name, ...statementOf(this, stmt, rest)); }
  /** A transaction: commit() or rollback() it (the host rolls back one the call left open). */
  begin() {
    const id = check("sql.begin", native.sqlBegin(this.name), this.name);
    return new SqlTransaction(this.name, id, this.placeholders);
  }
  /** Runs fn(tx) in a transaction: committed when fn returns, rolled back when it throws. */
  transaction(fn) {
    const tx = this.begin();
    try {
      const result = fn(tx);
      if (tx.open) tx.commit();
      return result;
    } finally {
      if (tx.open) tx.rollback();
    }
  }
}

export const sql = {
  /** A handle on a connector the operator granted (nothing is checked before a statement).
   *  `placeholders: "?"` for MySQL/MariaDB makes a tagged statement's placeholders `?`
   *  (the default is PostgreSQL's `$1, $2, ...`). */
  connect(name, { placeholders = "$" } = {}) {
    if (placeholders !== "$" && placeholders !== "?") {
      throw new TypeError(`placeholders must be "$" (PostgreSQL) or "?" (MySQL/MariaDB)`);
    }
    return new SqlConnection(String(name), placeholders);
  },
  bytes(v) { return new SqlValue("$bytes", b64encode(asU8(v))); },
  json(v) { return new SqlValue("$json", v); },
  timestamp(v) { return new SqlValue("$timestamp", v instanceof Date ? v.toISOString() : String(v)); },
  date(v) { return new SqlValue("$date", String(v)); },
  time(v) { return new SqlValue("$time", String(v)); },
  decimal(v) { return new SqlValue("$decimal", String(v)); },
};

function redisArg(v, i) {
  if (typeof v === "string" || (typeof v === "number" && Number.isInteger(v))) return v;
  if (typeof v === "bigint") return v.toString();
  if (isBytes(v)) return { $bytes: b64encode(asU8(v)) };
  throw new OmniHostError("redis", -3, `args[${i}] must be a string, an integer or bytes`);
}

function redisReply(v) {
  if (Array.isArray(v)) return v.map(redisReply);
  if (v !== null && typeof v === "object") {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "$bytes") return b64decode(v.$bytes);
    return Object.fromEntries(keys.map((k) => [k, redisReply(v[k])]));
  }
  return v;
}

class RedisConnection {
  constructor(name) { this.name = name; }
  /** Any command of §4.11; the reply: null, number, string (Uint8Array when not UTF-8),
   *  array or object (HGETALL). */
  command(cmd, ...args) {
    const req = JSON.stringify({ cmd: String(cmd), args: args.map(redisArg) });
    return redisReply(JSON.parse(block(`redis.${cmd}`, () => native.redisCommand(this.name, req))));
  }
  get(key) { return this.command("GET", key); }
  /** SET; `{ex: seconds}` makes the key expire. */
  set(key, value, { ex } = {}) {
    if (ex !== undefined) this.command("SET", key, value, "EX", ex);
    else this.command("SET", key, value);
  }
  incr(key) { return this.command("INCR", key); }
  incrby(key, delta) { return this.command("INCRBY", key, delta); }
  expire(key, seconds) { return this.command("EXPIRE", key, seconds) === 1; }
  ttl(key) { return this.command("TTL", key); }
  del(...keys) { return this.command("DEL", ...keys); }
  hget(key, field) { return this.command("HGET", key, field); }
  hset(key, field, value) { return this.command("HSET", key, field, value); }
  hgetall(key) { return this.command("HGETALL", key); }
  lpush(key, ...values) { return this.command("LPUSH", key, ...values); }
  rpush(key, ...values) { return this.command("RPUSH", key, ...values); }
  lrange(key, start, stop) { return this.command("LRANGE", key, start, stop); }
  sadd(key, ...members) { return this.command("SADD", key, ...members); }
  srem(key, ...members) { return this.command("SREM", key, ...members); }
  smembers(key) { return this.command("SMEMBERS", key); }
  publish(channel, message) { return this.command("PUBLISH", channel, message); }
}

export const redis = {
  /** A handle on a Redis connector the operator granted; keys are under the plugin's prefix. */
  connect(name) { return new RedisConnection(String(name)); },
};

/** omnicore:mcp (specs/abi.md §4.13): the MCP client of the tool call running now. */
export const mcp = {
  /** Progress of `total` (<= 0: unknown) with a message; true when the client was told. */
  progress(progress, total = 0, message = "") {
    return native.mcpProgress(Number(progress), Number(total), String(message)) === 0;
  },
  /** Send MCP request `method` with `params` to the client; its result, parsed. */
  ask(method, params) {
    return JSON.parse(block("mcp.ask", () => native.mcpAsk(JSON.stringify({ method, params }))));
  },
  /** Ask the user to fill in a form (elicitation/create): `{action, content?}`. */
  elicit(message, requestedSchema) {
    return mcp.ask("elicitation/create", { message, requestedSchema });
  },
  /** Ask the client's model (sampling/createMessage): `{role, content, model, ...}`. */
  sample(prompt, maxTokens = 100) {
    return mcp.ask("sampling/createMessage", {
      messages: [{ role: "user", content: { type: "text", text: String(prompt) } }], maxTokens,
    });
  },
};

/** The capabilities linked into this plugin at build time (names of specs/abi.md §4). */
export function linked() {
  const names = ["log", "config", "kv", "memory", "vectors", "tasks", "http", "events", "secrets",
    "sql", "redis", "mcp"];
  const mask = native.linked();
  return names.filter((_, i) => mask & (1 << i));
}

class TextEncoderImpl {
  get encoding() { return "utf-8"; }
  encode(s = "") { return encode(s); }
}
class TextDecoderImpl {
  get encoding() { return "utf-8"; }
  decode(b) { return b === undefined ? "" : decode(b); }
}

const consoleImpl = {
  log: log.info, info: log.info, debug: log.debug, trace: log.trace, warn: log.warn,
  error: log.error,
};
if (typeof globalThis.console === "undefined") globalThis.console = consoleImpl;
if (typeof globalThis.TextEncoder === "undefined") globalThis.TextEncoder = TextEncoderImpl;
if (typeof globalThis.TextDecoder === "undefined") globalThis.TextDecoder = TextDecoderImpl;

// -- HTTP routes (specs/http-routes.md §2, §3, §8) -------------------------------------------

/** The request a route handler gets: the host's envelope (specs/http-routes.md §2) decoded. */
export class RouteRequest {
  constructor(head, body) {
    this.method = head.method;
    this.path = head.path;
    this.query = typeof head.query === "string" ? head.query : "";
    // The host always sends query_params; a hand-made envelope (omnicore call) may not.
    this.queryParams = isStringLists(head.query_params) ? head.query_params : parseQuery(this.query);
    this.params = isStringMap(head.params) ? head.params : {};
    this.headers = isStringMap(head.headers) ? lowerKeys(head.headers) : {};
    this.route = typeof head.route === "string" ? head.route : "";
    this.url = typeof head.url === "string" ? head.url : "";
    this.remote = typeof head.remote === "string" ? head.remote : "";
    this.auth = head.auth !== null && typeof head.auth === "object" ? head.auth : { mode: "public" };
    this.body = body;
  }
  /** A header's value (the name in any case), or null. */
  header(name) { return this.headers[String(name).toLowerCase()] ?? null; }
  /** The first value of query parameter `name`, or null. */
  queryParam(name) { return this.queryParams[name]?.[0] ?? null; }
  /** Every value of query parameter `name`, in order ([] when absent). */
  queryAll(name) { return this.queryParams[name] ?? []; }
  /** The body as text (UTF-8; invalid bytes become U+FFFD). */
  text() { return decode(this.body); }
  /** The body parsed as JSON; InputError("invalid JSON body: ...") when it is not. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (e) {
      throw new InputError(`invalid JSON body: ${this.body.length ? e.message : "empty body"}`);
    }
  }
}

/** What a route handler answers: status, headers (name -> string or list) and body bytes. */
export class RouteResponse {
  constructor(status = 200, headers = {}, body = new Uint8Array(0)) {
    this.status = status;
    this.headers = { ...headers };
    this.body = typeof body === "string" ? encode(body) : asU8(body);
  }
  /** `text/plain; charset=utf-8`. */
  static text(text, status = 200) {
    return new RouteResponse(status, { "content-type": "text/plain; charset=utf-8" }, String(text));
  }
  /** `application/json`, the value serialised. */
  static json(value, status = 200) {
    return new RouteResponse(status, { "content-type": "application/json" }, JSON.stringify(value));
  }
  /** A status with an empty body. */
  static status(status) { return new RouteResponse(status); }
  /** Sets header `name` (a list sends it several times, as set-cookie needs); returns this. */
  header(name, value) {
    this.headers[String(name).toLowerCase()] = Array.isArray(value) ? value.map(String) : String(value);
    return this;
  }
}

const isStringMap = (v) => v !== null && typeof v === "object" && !Array.isArray(v)
  && Object.values(v).every((x) => typeof x === "string");
const isStringLists = (v) => v !== null && typeof v === "object" && !Array.isArray(v)
  && Object.values(v).every((x) => Array.isArray(x) && x.every((s) => typeof s === "string"));
const lowerKeys = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k.toLowerCase(), v]));

// application/x-www-form-urlencoded, blank values kept (as the host parses it).
function parseQuery(query) {
  const out = {};
  for (const part of query.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const [name, value] = (eq < 0 ? [part, ""] : [part.slice(0, eq), part.slice(eq + 1)]).map(formDecode);
    (out[name] ??= []).push(value);
  }
  return out;
}
function formDecode(s) {
  const plus = s.replace(/\+/g, " ");
  try {
    return decodeURIComponent(plus);
  } catch {
    return plus;   // a stray "%" is kept as it was sent rather than failing the request
  }
}

// The envelope as a RouteRequest, or a string saying why it is not one.
function decodeEnvelope(input) {
  if (input.length < 4) return `${input.length} bytes is too short for a request envelope`;
  const headLen = new DataView(input.buffer, input.byteOffset, input.byteLength).getUint32(0, true);
  if (headLen > input.length - 4) return `the head is ${headLen} bytes but only ${input.length - 4} follow`;
  let head;
  try {
    head = JSON.parse(decode(input.subarray(4, 4 + headLen)));
  } catch (e) {
    return `the head is not JSON (${e.message})`;
  }
  if (head === null || typeof head !== "object" || Array.isArray(head)) return "the head is not a JSON object";
  if (typeof head.method !== "string" || typeof head.path !== "string") {
    return "the head has no \"method\" and \"path\" strings";
  }
  return new RouteRequest(head, input.slice(4 + headLen));
}

function encodeResponse(res) {
  if (!(res instanceof RouteResponse)) {
    if (res === null || typeof res !== "object") {
      throw new TypeError("a route handler returns a RouteResponse (RouteResponse.text(...), .json(...))");
    }
    res = new RouteResponse(res.status ?? 200, res.headers ?? {}, res.body ?? new Uint8Array(0));
  }
  const head = encode(JSON.stringify({ status: res.status, headers: res.headers }));
  const out = new Uint8Array(4 + head.length + res.body.length);
  new DataView(out.buffer).setUint32(0, head.length, true);
  out.set(head, 4);
  out.set(res.body, 4 + head.length);
  return out;
}

function failed(e) {
  log.error(`route handler failed: ${e instanceof Error ? `${e.name}: ${e.message}` : fmt([e])}`);
  return encodeResponse(RouteResponse.text("internal error", 500));
}

/** A handler answering HTTP requests: `export const hook = route((req) => RouteResponse.text("hi"))`.
 *  A malformed envelope answers 400, an error thrown by `fn` 500 (logged), never a trap. */
export function route(fn) {
  return function routeHandler() {
    const req = decodeEnvelope(native.input());
    if (typeof req === "string") return encodeResponse(RouteResponse.text(`malformed request envelope: ${req}`, 400));
    const answer = (res) => {
      try {
        return encodeResponse(res);
      } catch (e) {
        return failed(e);
      }
    };
    let res;
    try {
      res = fn(req);
    } catch (e) {
      return failed(e);
    }
    // An async fn: the runtime settles the promise inside the call.
    if (res !== null && typeof res === "object" && typeof res.then === "function") return res.then(answer, failed);
    return answer(res);
  };
}
