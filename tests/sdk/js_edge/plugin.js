// Edge cases of the JS runtime's calling convention (tests/sdk/test_js.py).
import { bytes, log } from "omnicore";

export function echo(input) { return input; }
export function raw() { return bytes(); }
export function size(input) { return { chars: input.length, bytes: bytes().length }; }
export function big(input) { return "z".repeat(Number(input)); }
export function nothing() {}
export function fail() { throw new TypeError("boom from JS"); }
export function fail_value() { throw 42; }
export async function later(input) { await null; return { got: input }; }
export async function reject() { await null; throw new Error("async boom"); }
export function forever() { for (;;) {} }
export function recurse() { const f = (n) => f(n + 1) + 1; return f(0); }
export function nan() { return () => 1; }
export function console_log() { console.log("via console", { a: 1 }); log.warn("warned"); return "ok"; }
export function hog() { const a = []; for (;;) a.push(new Array(1e5).fill(1)); }
let calls = 0;
export function counter() { return ++calls; }
export function _private() { return "never a handler"; }
export function random() { return [Math.random(), Math.random()]; }
export function pending() { return new Promise(() => {}); }
