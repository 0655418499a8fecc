// omnicore/testing: unit-test JS/TS handlers natively with `node --test`.
//
//   import { TestHost, useTestHost, callJSON } from "omnicore/testing";
//   const host = useTestHost(new TestHost({ config: { greeting: "Hi" } }));
//   assert.deepEqual(callJSON(greet, { name: "Ada" }), { message: "Hi, Ada!" });
//   assert.equal(host.logs[0].message, "saying Hi to Ada");
//
// The "omnicore" import of the plugin resolves to the SDK's own runtime/api.js, running on an
// in-memory host (./native.js) that follows specs/abi.md §4 and its status codes.
// `omnicore test` sets this up; by hand: node --import <sdk/js>/testing/register.js --test
import { current, install } from "./state.js";

const LEVELS = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An in-memory omnicore host: everything is granted unless a field says otherwise. */
export class TestHost {
  constructor({ config = {}, logLevel = "trace", kv = {}, secrets = {}, http = null,
    handlers = null, sql = null, redisPrefix = "omnicore:plugin:" } = {}) {
    /** The plugin's config section (omnicore:config). */
    this.config = config;
    /** The lowest level kept in `logs` and reported by `log.enabled`. */
    this.logLevel = LEVELS[logLevel] ?? 0;
    /** Lines the plugin logged: {level, message}. */
    this.logs = [];
    /** The key-value store (omnicore:kv): key -> Uint8Array. */
    this.kv = new Map(Object.entries(kv).map(([k, v]) => [k,
      typeof v === "string" ? encoder.encode(v) : new Uint8Array(v)]));
    /** Secrets exposed to the plugin (null: exposed but unset); other names are DENIED. */
    this.secrets = secrets;
    /** `(request) => ({status, headers, body})` answers omnicore:http; null denies. */
    this.http = http;
    /** When set, the handler names tasks may enqueue (others: INVALID). */
    this.handlers = handlers;
    /** Published events: {topic, payload}. Enqueued tasks: {id, handler, payload, ...}. */
    this.events = [];
    this.tasks = [];
    /** Remembered memories (omnicore:memory): {id, tier, text, metadata, importance, vector}. */
    this.memories = [];
    /** Vector collections (omnicore:vectors): name -> Map(id -> {vector, metadata}). */
    this.vectors = new Map();
    /** `(call) => answer` answers omnicore:sql with canned results, no database running:
     *  `call` is {connector, sql, params, tx, query}; a query's answer is {rows: [objects]}
     *  or {columns, rows: [arrays]}, an execute's {rows_affected, last_insert_id?}. Throw
     *  Error("UNAVAILABLE: ...") to fail the statement; null makes every one UNAVAILABLE. */
    this.sql = sql;
    /** Statements run, in order (BEGIN, COMMIT and ROLLBACK too, with their tx). */
    this.sqlCalls = [];
    this.sqlOpen = new Map();
    this.sqlNext = 0;
    /** The in-memory Redis (omnicore:redis): full key (prefix included) -> string, Map
     *  (hash), Array (list) or Set. `redisTtl`: key -> seconds set (the clock does not move).
     *  PUBLISH lands in `events` as "redis:<prefix><channel>". */
    this.redisPrefix = redisPrefix;
    this.redis = new Map();
    this.redisTtl = new Map();
    this.input = null;
  }

  /** The fake Redis's keys as the server would hold them (prefix included), sorted. */
  redisKeys() { return [...this.redis.keys()].sort(); }

  /** The text of a kv value, or null. */
  kvText(key) { return this.kv.has(key) ? decoder.decode(this.kv.get(key)) : null; }
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
  try {
    return output(await handler(decoder.decode(data)));
  } finally {
    host.input = null;
  }
}

/** `call`, with the output parsed as JSON (undefined for an empty output). */
export async function callJSON(handler, input = "") {
  const out = await call(handler, input);
  return out.length ? JSON.parse(decoder.decode(out)) : undefined;
}
