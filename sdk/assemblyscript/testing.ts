// Unit tests of a plugin: `omnicore test` compiles `*.test.ts` with this module and the
// project's entries into one wasm32-wasi program and runs each `test(...)` in a fresh instance
// on omnicore's test host (the host's own capability code over in-memory stores, every
// capability granted; `omnicore:testing` below sets it up and reads it back): kv, tasks,
// events, memory, vectors, secrets and an in-memory Redis answer as omnicore does; HTTP and
// SQL answer what the test gave (`setHttp`, `setSql`); no fs directory is granted (every path
// DENIED). `logs()`, `events()`, `kvGet()` and `hostState()` show what the handler did.
//
//     import { greet } from "./plugin";
//     import { call, callError, expectEqual, setConfig, test } from "omnicore/testing";
//
//     test("greets by name", () => {
//       setConfig("greeting", "Hi");
//       expectEqual(call(greet, '{"name":"Ada"}'), '{"message":"Hi, Ada!"}');
//     });
//
// A failed expectation (or any throw) aborts that test's instance: the runner reports the
// message with the test's log and goes on with the next test.
import { Json, __setTestAnswer } from "omnicore";

@external("omnicore:testing", "reset") declare function host_reset(): void;
@external("omnicore:testing", "set_config") declare function host_set_config(p: usize, l: usize): i32;
@external("omnicore:testing", "config_set") declare function host_config_set(k: usize, kl: usize, v: usize, vl: usize): void;
@external("omnicore:testing", "set_log_level") declare function host_set_log_level(level: i32): void;
@external("omnicore:testing", "set_secret") declare function host_set_secret(n: usize, nl: usize, v: usize, vl: usize, present: i32): void;
@external("omnicore:testing", "kv_set") declare function host_kv_set(k: usize, kl: usize, v: usize, vl: usize): void;
@external("omnicore:testing", "kv_get") declare function host_kv_get(k: usize, kl: usize, o: usize, oc: usize): i32;
@external("omnicore:testing", "http_answer") declare function host_http_answer(h: usize, hl: usize, b: usize, bl: usize, failed: i32): void;
@external("omnicore:testing", "sql_answer") declare function host_sql_answer(a: usize, al: usize, failed: i32): void;
@external("omnicore:testing", "log_count") declare function host_log_count(): i32;
@external("omnicore:testing", "log_line") declare function host_log_line(i: i32, o: usize, oc: usize): i32;
@external("omnicore:testing", "event_count") declare function host_event_count(): i32;
@external("omnicore:testing", "event_topic") declare function host_event_topic(i: i32, o: usize, oc: usize): i32;
@external("omnicore:testing", "event_payload") declare function host_event_payload(i: i32, o: usize, oc: usize): i32;
@external("omnicore:testing", "redis_get") declare function host_redis_get(k: usize, kl: usize, o: usize, oc: usize): i32;
@external("omnicore:testing", "logs") declare function host_logs(o: usize, oc: usize): i32;
@external("omnicore:testing", "kv") declare function host_kv(o: usize, oc: usize): i32;
@external("omnicore:testing", "events") declare function host_events(o: usize, oc: usize): i32;
@external("omnicore:testing", "tasks") declare function host_tasks(o: usize, oc: usize): i32;
@external("omnicore:testing", "sql_statements") declare function host_sql_statements(o: usize, oc: usize): i32;
@external("omnicore:testing", "redis_keys") declare function host_redis_keys(o: usize, oc: usize): i32;
@external("omnicore:testing", "redis_published") declare function host_redis_published(o: usize, oc: usize): i32;
// The runner's side: which test to run is the program's argument (WASI's argv).
@external("wasi_snapshot_preview1", "args_sizes_get") declare function args_sizes_get(argc: usize, size: usize): i32;
@external("wasi_snapshot_preview1", "args_get") declare function args_get(argv: usize, buf: usize): i32;
@external("wasi_snapshot_preview1", "fd_write") declare function fd_write(fd: i32, iovs: usize, n: usize, out: usize): i32;

/** What every handler export looks like. */
export type Handler = (ptr: usize, len: usize) => u64;

const names: string[] = [];
const bodies: Array<() => void> = [];

/** Registers a test; the runner calls each in an instance of its own. */
export function test(name: string, body: () => void): void {
  names.push(name);
  bodies.push(body);
}

function utf8(text: string): ArrayBuffer { return String.UTF8.encode(text); }
function at(buf: ArrayBuffer): usize { return changetype<usize>(buf); }

/** Config `key` (a dotted path, as `config.get("db.port")` reads it) set to the text `value`. */
export function setConfig(key: string, value: string): void {
  const k = utf8(key), v = utf8(value);
  host_config_set(at(k), k.byteLength, at(v), v.byteLength);
}

/** The plugin's whole config section, from a JSON object (its values keep their types). */
export function setConfigJson(json: string): void {
  const j = utf8(json);
  if (host_set_config(at(j), j.byteLength) != 0) throw new Error("setConfigJson: not a JSON object: " + json);
}

/** Exposes secret `name` with `value`; names never set are DENIED. */
export function setSecret(name: string, value: string): void {
  const n = utf8(name), v = utf8(value);
  host_set_secret(at(n), n.byteLength, at(v), v.byteLength, 1);
}

export function setKv(key: string, value: string): void {
  const k = utf8(key), v = utf8(value);
  host_kv_set(at(k), k.byteLength, at(v), v.byteLength);
}

/** Keeps log lines at `level` (log.TRACE ... log.ERROR) and above; the default is INFO. */
export function setLogLevel(level: i32): void { host_set_log_level(level); }

/** A fresh host: config, secrets, log, kv, events, tasks, statements, Redis, and no HTTP or
 *  SQL answers. */
export function reset(): void {
  httpRoutes.clear();
  sqlRules.length = 0;
  host_reset();
}

// ---- HTTP and SQL: answered from the test's script, just before the call reaches the host --

class Route { constructor(public head: string, public body: string, public failed: bool) {} }
class SqlRule { constructor(public match: string, public answer: string, public failed: bool) {} }
const httpRoutes = new Map<string, Route>();
const sqlRules: SqlRule[] = [];

/** HTTP to `url` (or "connector:path" through a connector) answers `status` and `body`, with
 *  `headersJson` (`[["name", "value"], ...]`); a request nothing answers is UNAVAILABLE. */
export function setHttp(url: string, status: i32, body: string, headersJson: string = "[]"): void {
  httpRoutes.set(url, new Route('{"status":' + status.toString() + ',"headers":' + headersJson + "}", body, false));
}

/** HTTP to `url` fails with `message` (start it with a status name: "DENIED: ..."). */
export function setHttpError(url: string, message: string): void {
  httpRoutes.set(url, new Route(message, "", true));
}

/** A SQL statement whose text contains `match` answers `answerJson`, as a server's answer
 *  reaches a plugin: `{"columns": [{"name": "id", "type": "int"}], "rows": [[7]]}` for a
 *  query (the host refuses any other shape), `{"rows_affected": n}` for an execute. The first
 *  matching rule answers; a statement none matches is UNAVAILABLE. */
export function setSql(match: string, answerJson: string): void {
  sqlRules.push(new SqlRule(match, answerJson, false));
}

/** A SQL statement whose text contains `match` fails with `message` ("UNAVAILABLE: ..."). */
export function setSqlError(match: string, message: string): void {
  sqlRules.push(new SqlRule(match, message, true));
}

function member(doc: Json | null, key: string): string {
  const value = doc != null ? doc.get(key) : null;
  return value != null && value.isString() ? value.str : "";
}

function answer(kind: i32, requestJson: string): void {
  const doc = Json.parse(requestJson);
  if (kind == 0) {
    const url = member(doc, "url");
    const key = url != "" ? url : member(doc, "connector") + ":" + member(doc, "path");
    if (!httpRoutes.has(key)) return;  // the host's UNAVAILABLE
    const route = httpRoutes.get(key);
    const h = utf8(route.head), b = utf8(route.body);
    host_http_answer(at(h), h.byteLength, at(b), b.byteLength, route.failed ? 1 : 0);
    return;
  }
  const sql = member(doc, "sql");
  for (let i = 0; i < sqlRules.length; i++) {
    const rule = sqlRules[i];
    if (sql.includes(rule.match)) {
      const a = utf8(rule.answer);
      host_sql_answer(at(a), a.byteLength, rule.failed ? 1 : 0);
      return;
    }
  }
}
__setTestAnswer(answer);

// ---- what the handler left -------------------------------------------------------------

function readInto(what: i32, index: i32, k: ArrayBuffer, out: ArrayBuffer): i32 {
  const o = at(out), cap = out.byteLength;
  switch (what) {
    case 0: return host_logs(o, cap);
    case 1: return host_kv(o, cap);
    case 2: return host_events(o, cap);
    case 3: return host_tasks(o, cap);
    case 4: return host_sql_statements(o, cap);
    case 5: return host_redis_keys(o, cap);
    case 6: return host_redis_published(o, cap);
    case 7: return host_log_line(index, o, cap);
    case 8: return host_event_topic(index, o, cap);
    case 9: return host_event_payload(index, o, cap);
    case 10: return host_kv_get(at(k), k.byteLength, o, cap);
    default: return host_redis_get(at(k), k.byteLength, o, cap);
  }
}

// A §3.2 read: `what` of the reads above, again with the size the host asked for when it
// did not fit; null when the host answered a negative status (no such item).
function read(what: i32, index: i32, key: string = ""): string | null {
  const k = utf8(key);
  let out = new ArrayBuffer(1024);
  let n = readInto(what, index, k, out);
  if (n > out.byteLength) {
    out = new ArrayBuffer(n);
    n = readInto(what, index, k, out);
  }
  return n < 0 ? null : String.UTF8.decodeUnsafe(at(out), n);
}

const STATES = ["logs", "kv", "events", "tasks", "sql", "redis", "redis_published"];

/** What the handler left in the test host, as the host's JSON (bytes in base64): "logs"
 *  (`[[level, text]]`), "kv" (`{key: value}`), "events" (`[[topic, payload]]`), "tasks"
 *  (`[[id, handler, payload, delayMs, cancelled]]`), "sql" (`[[connector, sql, params, tx]]`,
 *  BEGIN/COMMIT/ROLLBACK too), "redis" (the keys, with the plugin's prefix) or
 *  "redis_published" (`[[channel, message]]`). */
export function hostState(what: string): string {
  const i = STATES.indexOf(what);
  if (i < 0) throw new Error("hostState: no " + what + " (one of " + STATES.join(", ") + ")");
  const got = read(i, 0);
  return got != null ? got : "null";
}

/** The log lines kept so far, each "LEVEL message" ("INFO greeting Ada"). */
export function logs(): string[] {
  const out: string[] = [];
  const n = host_log_count();
  for (let i = 0; i < n; i++) out.push(read(7, i)!);
  return out;
}

export class Event { constructor(public topic: string, public payload: string) {} }

/** The events published so far (topics as the plugin named them). */
export function events(): Event[] {
  const out: Event[] = [];
  const n = host_event_count();
  for (let i = 0; i < n; i++) out.push(new Event(read(8, i)!, read(9, i)!));
  return out;
}

/** The kv value at `key`, or null. */
export function kvGet(key: string): string | null { return read(10, 0, key); }

/** The Redis string at `key` (without the plugin's prefix), or null. */
export function redisGet(key: string): string | null { return read(11, 0, key); }

// ---- calling handlers and expectations ----------------------------------------------------

function invoke(handler: Handler, input: string, wantError: bool): string {
  const buf = String.UTF8.encode(input);
  const packed = handler(changetype<usize>(buf), buf.byteLength);
  const text = String.UTF8.decodeUnsafe((packed >> 32) as usize, (packed & 0x7fffffff) as usize);
  const failed = (packed & 0x80000000) != 0;
  if (failed != wantError) throw new Error((failed ? "the handler failed: " : "expected a failure, got: ") + text);
  return text;
}

/** Calls `handler` with `input`; its output (a failure fails the test). */
export function call(handler: Handler, input: string): string { return invoke(handler, input, false); }

/** Calls `handler` with `input`, expecting it to fail; its error message. */
export function callError(handler: Handler, input: string): string { return invoke(handler, input, true); }

export function expectEqual(actual: string, expected: string): void {
  if (actual != expected) throw new Error("expected " + expected + ", got " + actual);
}

export function expectTrue(condition: bool, what: string): void {
  if (!condition) throw new Error("expected " + what);
}

// ---- the runner's side (omnicore.toolchains.testhost.astest), exported by testing_exports.ts

function argv(): string[] {
  const sizes = new ArrayBuffer(8);
  args_sizes_get(at(sizes), at(sizes) + 4);
  const argc = load<u32>(at(sizes)), size = load<u32>(at(sizes) + 4);
  const ptrs = new ArrayBuffer(<i32>argc * 4), buf = new ArrayBuffer(<i32>size);
  args_get(at(ptrs), at(buf));
  const out: string[] = [];
  for (let i: u32 = 0; i < argc; i++) {
    const start = <usize>load<u32>(at(ptrs) + i * 4);
    let end = start;
    while (load<u8>(end) != 0) end++;
    out.push(String.UTF8.decodeUnsafe(start, end - start));
  }
  return out;
}

function print(text: string): void {
  const data = utf8(text), iov = new ArrayBuffer(8), written = new ArrayBuffer(4);
  store<u32>(at(iov), <u32>at(data));
  store<u32>(at(iov) + 4, <u32>data.byteLength);
  fd_write(1, at(iov), 1, at(written));
}

/** `tests --list`: the tests' names, one a line; `tests --run I`: the I-th test alone. */
export function _start(): void {
  const args = argv();
  if (args.length >= 3 && args[1] == "--run") {
    bodies[I32.parseInt(args[2])]();
  } else {
    let text = "";
    for (let i = 0; i < names.length; i++) text += names[i].replaceAll("\n", " ") + "\n";
    print(text);
  }
}
