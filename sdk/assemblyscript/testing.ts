// Unit tests of a plugin: `omnicore test` compiles `*.test.ts` with this module and runs each
// `test(...)` in a fresh instance on Node (testing/run.mjs), against the JS SDK's in-memory
// test host: every capability answers as omnicore would (kv, tasks, events, memory, vectors,
// secrets, an in-memory Redis), HTTP and SQL from the answers a test sets (`setHttp`,
// `setSql`), no fs directory (every path DENIED); `hostState` shows what the handler did.
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
// message and goes on with the next test.

@external("omnicore:testing", "set") declare function host_set(table: i32, k: usize, kl: usize, v: usize, vl: usize): void;
@external("omnicore:testing", "http") declare function host_http(u: usize, ul: usize, status: i32, b: usize, bl: usize): void;
@external("omnicore:testing", "sql") declare function host_sql(m: usize, ml: usize, a: usize, al: usize): void;
@external("omnicore:testing", "state") declare function host_state(w: usize, wl: usize, o: usize, oc: usize): i32;

/** What every handler export looks like. */
export type Handler = (ptr: usize, len: usize) => u64;

const names: string[] = [];
const bodies: Array<() => void> = [];

/** Registers a test; the runner calls each in an instance of its own. */
export function test(name: string, body: () => void): void {
  names.push(name);
  bodies.push(body);
}

function put(table: i32, key: string, value: string): void {
  const k = String.UTF8.encode(key), v = String.UTF8.encode(value);
  host_set(table, changetype<usize>(k), k.byteLength, changetype<usize>(v), v.byteLength);
}

/** Config `key` as the host answers it: a string verbatim, anything else as JSON text. */
export function setConfig(key: string, value: string): void { put(0, key, value); }
export function setSecret(name: string, value: string): void { put(1, name, value); }
export function setKv(key: string, value: string): void { put(2, key, value); }

/** HTTP to `url` (or "connector:path" through a connector) answers `status` and `body`;
 *  any other request is DENIED. */
export function setHttp(url: string, status: i32, body: string): void {
  const u = String.UTF8.encode(url), b = String.UTF8.encode(body);
  host_http(changetype<usize>(u), u.byteLength, status, changetype<usize>(b), b.byteLength);
}

/** A SQL statement whose text contains `match` answers `answerJson`: `{"rows": [{...}]}` (or
 *  `{"columns", "rows": [[...]]}`) for a query, `{"rows_affected": n}` for an execute. The
 *  first matching rule answers; a statement none matches is UNAVAILABLE. */
export function setSql(match: string, answerJson: string): void {
  const m = String.UTF8.encode(match), a = String.UTF8.encode(answerJson);
  host_sql(changetype<usize>(m), m.byteLength, changetype<usize>(a), a.byteLength);
}

/** What the handler left in the test host, as JSON: "tasks" (`[{id, handler, payload,
 *  delayMs, cancelled}]`), "events", "sql" (the statements run, BEGIN/COMMIT too), "redis"
 *  (full key -> value), "memories", "vectors", "logs" or "kv". */
export function hostState(what: string): string {
  const w = String.UTF8.encode(what);
  let out = new ArrayBuffer(1024);
  let n = host_state(changetype<usize>(w), w.byteLength, changetype<usize>(out), out.byteLength);
  if (n > out.byteLength) {  // the caller's buffer (§3.2): again with the size it needs
    out = new ArrayBuffer(n);
    n = host_state(changetype<usize>(w), w.byteLength, changetype<usize>(out), out.byteLength);
  }
  return String.UTF8.decodeUnsafe(changetype<usize>(out), n);
}

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

// The runner's side (exported through testing_exports.ts).
export function __test_count(): i32 { return names.length; }
let nameBuf: ArrayBuffer | null = null;
export function __test_name(i: i32): u64 {
  const buf = String.UTF8.encode(names[i]);
  nameBuf = buf;
  return ((changetype<usize>(buf) as u64) << 32) | (buf.byteLength as u64);
}
export function __test_run(i: i32): void { bodies[i](); }
