// The line to omnicore's test host (host/omnicore/toolchains/testhost/served.py), one server
// per test file's process, started at the first TestHost. A plugin calls host functions
// synchronously, so the calls are blocking reads and writes on two FIFOs: a u32 LE length,
// then JSON (bytes as {"$bytes": base64}, integers past 2^53 as {"$int": text}). While a
// call runs the server may ask the TestHost for an HTTP or SQL answer ({ask}) first.
// The server's standard input is a pipe from this process: it ends when this process does.
import { spawn } from "node:child_process";
import {
  closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
let line = null;
let host = null;

function replacer(_key, v) {
  if (v instanceof ArrayBuffer) v = new Uint8Array(v);
  if (ArrayBuffer.isView(v)) {
    return { $bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
  }
  return typeof v === "bigint" ? { $int: String(v) } : v;
}

function reviver(_key, v) {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
  const keys = Object.keys(v);
  if (keys.length !== 1) return v;
  if (typeof v.$bytes === "string") return new Uint8Array(Buffer.from(v.$bytes, "base64"));
  return typeof v.$int === "string" ? BigInt(v.$int) : v;
}

function connect() {
  const argv = JSON.parse(process.env.OMNICORE_TEST_HOST ?? "null");
  if (!Array.isArray(argv)) {
    throw new Error("the TestHost is omnicore's test host: run the tests with `omnicore test` "
      + "(it sets OMNICORE_TEST_HOST)");
  }
  const dir = mkdtempSync(join(tmpdir(), "omnicore-js-test-"));
  // Its errors go to a file read here: a server that cannot start says why at once.
  const errors = openSync(join(dir, "errors"), "w");
  const server = spawn(argv[0], [...argv.slice(1), dir], { stdio: ["pipe", "ignore", errors] });
  closeSync(errors);
  server.unref();
  server.stdin.unref();
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + 60_000;
  while (!existsSync(join(dir, "ready"))) {
    const said = readFileSync(join(dir, "errors"), "utf8");
    if (/Traceback|Error/.test(said) || Date.now() > deadline) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`omnicore's test host (${argv.join(" ")}) did not start: ${said || "no answer in 60 s"}`);
    }
    Atomics.wait(nap, 0, 0, 5);
  }
  // Both ends are open in the server (read-write): neither open waits.
  line = { out: openSync(join(dir, "request"), "w"), in: openSync(join(dir, "answer"), "r") };
  rmSync(dir, { recursive: true, force: true });
}

function exactly(size) {
  const buf = new Uint8Array(size);
  for (let at = 0; at < size;) {
    const got = readSync(line.in, buf, at, size - at, null);
    if (got === 0) throw new Error("omnicore's test host ended (see its error above)");
    at += got;
  }
  return buf;
}

function send(message) {
  const data = encoder.encode(JSON.stringify(message, replacer));
  const frame = new Uint8Array(4 + data.length);
  new DataView(frame.buffer).setUint32(0, data.length, true);
  frame.set(data, 4);
  for (let at = 0; at < frame.length;) at += writeSync(line.out, frame, at);
}

/** Send `message`, answer the server's questions with `asker.answer(question)`, and return
 *  its answer. An exception in the asker is thrown once the server has answered. */
export function request(message, asker = null) {
  if (line === null) connect();
  send(message);
  let failure = null;
  for (;;) {
    const got = JSON.parse(decoder.decode(exactly(new DataView(exactly(4).buffer).getUint32(0, true))),
      reviver);
    if (got !== null && typeof got === "object" && typeof got.ask === "string") {
      let answer;
      try {
        answer = asker.answer(got);
      } catch (err) {
        failure ??= err;
        answer = { head: `UNAVAILABLE: the TestHost's ${got.ask} function threw`,
          answer: `UNAVAILABLE: the TestHost's ${got.ask} function threw`, body: "", failed: true };
      }
      send(answer);
      continue;
    }
    if (failure !== null) throw failure;
    if (got !== null && typeof got === "object" && typeof got.error === "string") {
      throw new Error(`omnicore's test host: ${got.error}`);
    }
    return got;
  }
}

export function current() {
  if (host === null) {
    throw new Error("no TestHost in use: call useTestHost(new TestHost({...})) first "
      + "(import { TestHost, useTestHost } from \"omnicore/testing\")");
  }
  return host;
}

export function install(next) { host = next; return next; }
