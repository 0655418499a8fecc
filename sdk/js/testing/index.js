// omnicore/testing: unit-test JS/TS handlers natively with `node --test`.
//
//   import { TestHost, useTestHost, callJSON } from "omnicore/testing";
//   const host = useTestHost(new TestHost({ config: { greeting: "Hi" } }));
//   assert.deepEqual(callJSON(greet, { name: "Ada" }), { message: "Hi, Ada!" });
//   assert.equal(host.logs[0].message, "saying Hi to Ada");
//
// The "omnicore" import of the plugin resolves to the SDK's own runtime/api.js, whose host
// functions (./native.js) are answered by omnicore's test host, the one every language's tests
// run on: the capabilities' own code over in-memory stores (./channel.js reaches it).
// `omnicore test` sets this up.
import { current, install, request } from "./channel.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytesOf = (v) => (typeof v === "string" ? encoder.encode(v) : new Uint8Array(v));
const STATUS_TEXT = /^[A-Z_]+: /;

/** The plugin's handlers as `omnicore test` found them in its entry's exports. */
const HANDLERS = JSON.parse(process.env.OMNICORE_TEST_HANDLERS ?? "[]");

/** A cell of a test's SQL answer as the host sends it (bytes, dates and JSON tagged). */
function cell(v) {
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString("base64") };
  if (v instanceof Date) return { $timestamp: v.toISOString() };
  if (v !== null && typeof v === "object" && typeof v.toJSON === "function") return v.toJSON();
  return v === undefined ? null : v;
}

/** A test's SQL answer in the host's shape: rows given as objects (keys are the columns) or
 *  as arrays beside `columns` (names or {name, type}); the host checks the rest. */
function sqlAnswer(answer, query) {
  answer ??= {};
  if (!query) {
    return JSON.stringify({ rows_affected: answer.rows_affected ?? 0,
      ...(answer.last_insert_id === undefined ? {} : { last_insert_id: answer.last_insert_id }) });
  }
  const rows = answer.rows ?? [];
  const columns = (answer.columns ?? (rows.length && !Array.isArray(rows[0]) ? Object.keys(rows[0]) : []))
    .map((c) => (typeof c === "string" ? { name: c, type: "" } : c));
  return JSON.stringify({ columns, rows: rows.map((r) => (Array.isArray(r) ? r
    : columns.map((c) => r[c?.name])).map(cell)) });
}

/** The plugin's kv in the test host's store: a Map's get/set/has/delete/keys/entries. */
class KvView {
  #host;
  constructor(host) { this.#host = host; }
  #all() { return new Map(Object.entries(this.#host.read("kv"))); }
  get(key) { return this.#all().get(key); }
  has(key) { return this.#all().has(key); }
  set(key, value) { request({ op: "kv_set", host: this.#host.id, key, value: bytesOf(value) }); return this; }
  delete(key) { return request({ op: "kv_delete", host: this.#host.id, key }); }
  keys() { return this.#all().keys(); }
  entries() { return this.#all().entries(); }
  get size() { return this.#all().size; }
  [Symbol.iterator]() { return this.entries(); }
}

/** One test's host, omnicore's test host: every capability granted, nothing connected. */
export class TestHost {
  constructor({ config = {}, logLevel = "trace", kv = {}, secrets = {}, http = null,
    handlers = null, sql = null, sqlKinds = {}, redisPrefix = "omnicore:plugin:" } = {}) {
    /** The plugin's config section (omnicore:config), as given. */
    this.config = config;
    /** `(request) => ({status, headers, body})` answers omnicore:http (throw
     *  Error("UNAVAILABLE: ...") to fail a request); without it every request is UNAVAILABLE. */
    this.http = http;
    /** `(call) => answer` answers omnicore:sql: `call` is {connector, sql, params, tx,
     *  query}; a query's answer is {rows: [objects]} or {columns, rows: [arrays]}, an
     *  execute's {rows_affected, last_insert_id?}; throw Error("UNAVAILABLE: ...") to fail
     *  the statement. Without it every statement is UNAVAILABLE. */
    this.sql = sql;
    /** `sqlKinds` names a connector's kind as the operator's config does ({inventory:
     *  "mysql"}): whose grammar judges its statements, PostgreSQL's unless named. */
    this.input = null;
    this.#queries = [];
    this.id = request({ op: "new", config, log_level: logLevel, redis_prefix: redisPrefix,
      sql_kinds: sqlKinds,
      handlers: handlers ?? HANDLERS,
      kv: Object.fromEntries(Object.entries(kv).map(([k, v]) => [k, bytesOf(v)])),
      secrets: Object.fromEntries(Object.entries(secrets)
        .map(([k, v]) => [k, v === null ? null : bytesOf(v)])) }).id;
  }

  #queries;

  /** What the plugin did, as the test host keeps it. */
  read(what) { return request({ op: "read", host: this.id, what }); }

  /** The server's questions while a call runs: the answer to an HTTP request or statement. */
  answer(question) {
    try {
      if (question.ask === "http") {
        if (typeof this.http !== "function") {
          return { head: `UNAVAILABLE: the test gave no answer for ${question.request.url
            ?? question.request.connector} (new TestHost({ http: (request) => ... }))`,
          body: "", failed: true };
        }
        const res = this.http({ ...question.request, body: question.body });
        return { head: JSON.stringify({ status: res.status ?? 200,
          headers: Object.entries(res.headers ?? {}) }), body: bytesOf(res.body ?? ""),
        failed: false };
      }
      this.#queries[question.index] = question.query;
      if (typeof this.sql !== "function") {
        return { answer: `UNAVAILABLE: connector ${question.statement[0]}: the TestHost has `
          + "no sql function", failed: true };
      }
      const [connector, sql, params, tx] = question.statement;
      return { answer: sqlAnswer(this.sql({ connector, sql, params, tx, query: question.query }),
        question.query), failed: false };
    } catch (err) {
      if (!(err instanceof Error && STATUS_TEXT.test(err.message))) throw err;
      return { head: err.message, answer: err.message, body: "", failed: true };
    }
  }

  /** Lines the plugin logged: {level, message}. */
  get logs() { return this.read("logs").map(([level, message]) => ({ level, message })); }
  /** The key-value store (omnicore:kv): key -> Uint8Array. */
  get kv() { return new KvView(this); }
  /** Published events: {topic, payload}; a Redis PUBLISH as "redis:<prefix><channel>". */
  get events() {
    const redis = this.read("redis");
    return [...this.read("events").map(([topic, payload]) => ({ topic, payload })),
      ...redis.published.map(([channel, payload]) => ({ topic: `redis:${redis.prefix}${channel}`,
        payload }))];
  }
  /** Enqueued tasks: {id, handler, payload, delayMs, cancelled}. */
  get tasks() {
    return this.read("tasks").map(([id, handler, payload, delayMs, cancelled]) =>
      ({ id, handler, payload, delayMs, cancelled }));
  }
  /** Remembered memories (omnicore:memory): {id, tier, text, metadata, score, created_at}. */
  get memories() { return this.read("memories"); }
  /** Statements run, in order (BEGIN, COMMIT and ROLLBACK too, with their tx). */
  get sqlCalls() {
    return this.read("statements").map(([connector, sql, params, tx], i) =>
      ({ connector, sql, params, tx, query: this.#queries[i] ?? false }));
  }

  /** The Redis keys as the server would hold them (prefix included), sorted. */
  redisKeys() {
    const redis = this.read("redis");
    return redis.keys.map((k) => redis.prefix + k).sort();
  }

  /** The text of a kv value, or null. */
  kvText(key) { const v = this.kv.get(key); return v === undefined ? null : decoder.decode(v); }
}

/** Make `host` the one the plugin's "omnicore" import talks to; returns it. */
export function useTestHost(host = new TestHost()) { return install(host); }

function output(value) {
  // As the runtime sends a handler's result (specs/abi.md, sdk/js/README.md "Output").
  if (value === undefined || value === null) return new Uint8Array(0);
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof Uint8Array) return new Uint8Array(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value.slice(0));
  return encoder.encode(JSON.stringify(value));
}

/**
 * Call `handler` as the host would: `input` (string, bytes, or a value sent as JSON) goes in
 * as a string, `bytes()` sees its bytes; the result comes back as the bytes the host would
 * receive. A thrown value is rethrown (the host would report it as the call's error).
 */
export async function call(handler, input = "") {
  const host = current();
  const data = output(input);
  host.input = data;
  request({ op: "enter", host: host.id });
  try {
    return output(await handler(decoder.decode(data)));
  } finally {
    host.input = null;
    request({ op: "leave", host: host.id });
  }
}

/** `call`, with the output parsed as JSON (undefined for an empty output). */
export async function callJSON(handler, input = "") {
  const out = await call(handler, input);
  return out.length ? JSON.parse(decoder.decode(out)) : undefined;
}
