// Unit tests of a plugin: `omnicore test` compiles `*.test.ts` with this module and runs each
// `test(...)` in a fresh instance on Node (testing/run.mjs), where an in-memory host answers
// log, config, kv, events and secrets (the other capabilities answer UNAVAILABLE).
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
