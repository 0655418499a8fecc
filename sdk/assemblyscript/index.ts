// omnicore plugins in AssemblyScript (omnicore ABI v1, specs/abi.md).
//
// `omnicore build` compiles the plugin with the npm `assemblyscript` compiler (the set-up
// installs it), this package resolving as "omnicore":
//
//     import { Json, config, fail, input, log, okJson } from "omnicore";
//
//     export function greet(ptr: usize, len: usize): u64 {
//       const doc = Json.parse(input(ptr, len));
//       if (doc == null || !doc.isObject()) return fail("invalid JSON input");
//       const name = doc.getString("name", "world");
//       log.info("greeting " + name);
//       return okJson(Json.object().set("message", Json.str("Hello, " + name + "!")));
//     }
//
// A handler is an exported `(ptr: usize, len: usize): u64`: read the input with `input` (text)
// or `inputBytes`, answer with `ok` (text), `okJson` (a `Json` tree), `okBytes` or `fail` (the
// host raises GuestError with the message). The output stays valid until the next call
// (ABI §2.3): the SDK writes it into one raw block it reuses.
//
// The runtime is AssemblyScript's minimal one (`omnicore build` picks it; asconfig.json may
// choose "incremental"): the SDK collects garbage when `ok`/`okJson`/`okBytes`/`fail` hand
// over the output, so build the output last. `omni_alloc`/`omni_free` (exported by
// `omnicore build` from exports.ts) sit on the raw heap, outside the GC. Top-level statements
// run in the module's start function, which may call host functions (ABI §2.1). `throw` and
// failed assertions abort: the SDK's `abort` logs the message at error level, then traps.
//
// Capabilities: `log`, `config`, `kv`, `events`, `secrets`, `tasks`, `http`, `memory`,
// `vectors`, `sql`, `redis`, `mcp`, and `fs` (the fs grant's directories, over WASI); a plugin
// imports one only if it calls it. Failures are negative
// `Status` codes (ABI §3.1); `lastStatus` says why a function answered null.

// ---- host imports (ABI §4) ---------------------------------------------------------------

@external("omnicore:log", "write") declare function log_write(level: i32, ptr: usize, len: usize): void;
@external("omnicore:log", "enabled") declare function log_enabled(level: i32): i32;
@external("omnicore:config", "get") declare function config_get(k: usize, kl: usize, o: usize, oc: usize): i32;
@external("omnicore:kv", "get") declare function kv_get(k: usize, kl: usize, o: usize, oc: usize): i32;
@external("omnicore:kv", "set") declare function kv_set(k: usize, kl: usize, v: usize, vl: usize): i32;
@external("omnicore:kv", "delete") declare function kv_delete(k: usize, kl: usize): i32;
@external("omnicore:kv", "incr") declare function kv_incr(k: usize, kl: usize, delta: i64, out: usize): i32;
@external("omnicore:kv", "list") declare function kv_list(k: usize, kl: usize, o: usize, oc: usize): i32;
@external("omnicore:events", "publish") declare function events_publish(t: usize, tl: usize, p: usize, pl: usize): i32;
@external("omnicore:secrets", "get") declare function secrets_get(k: usize, kl: usize, o: usize, oc: usize): i32;
@external("omnicore:tasks", "enqueue") declare function tasks_enqueue(h: usize, hl: usize, p: usize, pl: usize, delay: i64): i64;
@external("omnicore:tasks", "cancel") declare function tasks_cancel(id: i64): i32;
@external("omnicore:http", "request") declare function http_request(r: usize, rl: usize, b: usize, bl: usize): i64;
@external("omnicore:memory", "remember") declare function memory_remember(tier: i32, p: usize, l: usize): i64;
@external("omnicore:memory", "recall") declare function memory_recall(q: usize, ql: usize, o: usize, oc: usize): i32;
@external("omnicore:memory", "forget") declare function memory_forget(id: i64): i32;
@external("omnicore:vectors", "upsert") declare function vectors_upsert(c: usize, cl: usize, i: usize, il: usize, v: usize, dim: i32, m: usize, ml: usize): i32;
@external("omnicore:vectors", "search") declare function vectors_search(c: usize, cl: usize, v: usize, dim: i32, k: i32): i64;
@external("omnicore:vectors", "query") declare function vectors_query(c: usize, cl: usize, v: usize, dim: i32, k: i32, f: usize, fl: usize): i64;
@external("omnicore:vectors", "delete") declare function vectors_delete(c: usize, cl: usize, i: usize, il: usize): i32;
@external("omnicore:sql", "query") declare function sql_query(c: usize, cl: usize, r: usize, rl: usize): i64;
@external("omnicore:sql", "execute") declare function sql_execute(c: usize, cl: usize, r: usize, rl: usize): i64;
@external("omnicore:sql", "begin") declare function sql_begin(c: usize, cl: usize): i64;
@external("omnicore:sql", "commit") declare function sql_commit(tx: i64): i32;
@external("omnicore:sql", "rollback") declare function sql_rollback(tx: i64): i32;
@external("omnicore:redis", "command") declare function redis_command(c: usize, cl: usize, r: usize, rl: usize): i64;
@external("omnicore:mcp", "progress") declare function mcp_progress(done: f64, total: f64, m: usize, ml: usize): i32;
@external("omnicore:mcp", "ask") declare function mcp_ask(r: usize, rl: usize): i64;

// UTF-8 bytes of a string, for passing (ptr, len) to the host.
class Utf8 {
  constructor(public buf: ArrayBuffer) {}
  static of(text: string): Utf8 { return new Utf8(String.UTF8.encode(text)); }
  get ptr(): usize { return changetype<usize>(this.buf); }
  get len(): usize { return this.buf.byteLength; }
}

// ---- status codes (ABI §3.1): status.ts, which fs.ts reads too ------------------------------

import { Status, lastError, lastStatus } from "./status";
export { Status, lastError, lastStatus } from "./status";

// ---- runtime: allocator, abort, input and output (ABI §1.1, §2) ---------------------------

/** ABI §1.1, exported by `omnicore build`: a raw heap block the GC never moves or frees. */
export function omni_alloc(len: usize): usize {
  return heap.alloc(len > 0 ? len : 1);
}

export function omni_free(ptr: usize, len: usize): void {
  if (ptr != 0) heap.free(ptr);
}

/** AssemblyScript's `abort` (a `throw`, a failed `assert`): log why, then trap. */
export function omniAbort(message: string | null, file: string | null, line: u32, column: u32): void {
  let text = "abort: " + (message != null ? message : "(no message)");
  if (file != null) text += " at " + file + ":" + line.toString() + ":" + column.toString();
  writeLog(4, text);
  unreachable();
}

// Three raw heap blocks reused by every call, outside the GC: the output (kept until the
// next call, ABI §2.3), arguments passed to the host, and the host's answers (§3.2). Plain
// numbers, so that no initializer runs code (an abort while one ran would find them unset).
let outputPtr: usize = 0, outputCap: usize = 0;
let argsPtr: usize = 0, argsCap: usize = 0;
let answerPtr: usize = 0, answerCap: usize = 0;
// The previous call's okBytes output: referenced here so the GC keeps it until the next call.
let lastOutput: ArrayBuffer | null = null;
// The UTF-8 of one or two strings in the args block: (arg0, len0) and (arg1, len1).
let arg0: usize = 0, len0: usize = 0, arg1: usize = 0, len1: usize = 0;
// The length of the answer a read left in the answer block (until the next host call).
let answerLen: usize = 0;

function capacityFor(n: usize): usize {
  let cap: usize = 256;
  while (cap < n) cap <<= 1;
  return cap;
}

// A block of `cap` bytes replacing `ptr` (whose contents are gone).
function regrow(ptr: usize, cap: usize): usize {
  if (ptr != 0) heap.free(ptr);
  return heap.alloc(cap);
}

function ensureOutput(n: usize): usize {
  if (n > outputCap) { outputCap = capacityFor(n); outputPtr = regrow(outputPtr, outputCap); }
  return outputPtr;
}

function ensureArgs(n: usize): usize {
  if (n > argsCap) { argsCap = capacityFor(n); argsPtr = regrow(argsPtr, argsCap); }
  return argsPtr;
}

function ensureAnswer(n: usize): usize {
  if (n > answerCap) { answerCap = capacityFor(n); answerPtr = regrow(answerPtr, answerCap); }
  return answerPtr;
}

function pack(ptr: usize, len: usize, isError: bool): u64 {
  const n: usize = len > 0x7fffffff ? <usize>0x7fffffff : len;
  return ((ptr as u64) << 32) | (isError ? 0x80000000 : 0) | (n as u64);
}

// Under the minimal runtime (omnicore build's default) garbage is collected here, when a
// handler hands over its output: the collector sees only globals, and the handler is done.
const MINIMAL_RUNTIME = 1; // ASC_RUNTIME's value for --runtime minimal (Runtime.Minimal)
// A collection walks what was allocated since the last one: a few calls' worth costs about
// what one call's does, and garbage stays bounded at a few calls' allocations.
const COLLECT_EVERY = 8;
let callsSinceCollect: i32 = 0;
function endOfCall(): void {
  if (ASC_RUNTIME == MINIMAL_RUNTIME && ++callsSinceCollect >= COLLECT_EVERY) {
    callsSinceCollect = 0;
    __collect();
  }
}

function packText(text: string, isError: bool): u64 {
  const ptr = ensureOutput(<usize>String.UTF8.byteLength(text));
  const len = String.UTF8.encodeUnsafe(changetype<usize>(text), text.length, ptr);
  lastOutput = null;
  endOfCall();
  return pack(ptr, len, isError);
}

function setArgs(a: string, b: string | null = null): void {
  const na = <usize>String.UTF8.byteLength(a);
  const nb = b != null ? <usize>String.UTF8.byteLength(b) : 0;
  const base = ensureArgs(na + nb);
  arg0 = base;
  len0 = String.UTF8.encodeUnsafe(changetype<usize>(a), a.length, base);
  arg1 = base + len0;
  len1 = b != null ? String.UTF8.encodeUnsafe(changetype<usize>(b), b.length, arg1) : 0;
}

/** The handler's input as UTF-8 text (invalid sequences replaced). */
export function input(ptr: usize, len: usize): string {
  return String.UTF8.decodeUnsafe(ptr, len);
}

/** A copy of the handler's input bytes (the host reuses its buffer after the call). */
export function inputBytes(ptr: usize, len: usize): Uint8Array {
  const out = new Uint8Array(len as i32);
  memory.copy(out.dataStart, ptr, len);
  return out;
}

/** Succeed with `text` (UTF-8) as the output. */
export function ok(text: string): u64 {
  return packText(text, false);
}

/** Succeed with `value`'s JSON text as the output, written as UTF-8 straight into the output
 *  block (no intermediate strings: the tree is walked twice, for a size bound, then to write). */
export function okJson(value: Json): u64 {
  const base = ensureOutput(utf8Bound(value));
  const end = writeUtf8(value, base);
  lastOutput = null;
  endOfCall();
  return pack(base, end - base, false);
}

/** Succeed with `data` as the output. */
export function okBytes(data: Uint8Array): u64 {
  lastOutput = data.buffer;
  const packed = pack(data.dataStart, data.byteLength, false);
  endOfCall();
  return packed;
}

/** Fail the call: the host raises GuestError with `message`. */
export function fail(message: string): u64 {
  return packText(message, true);
}

// ---- strings across the boundary ---------------------------------------------------------

// The §3.2 readers, passed by reference so that a plugin imports only the ones it calls (a
// switch over all of them would make every plugin request config, kv, secrets and memory).
type Reader = (key: usize, keyLen: usize, out: usize, outCap: usize) => i32;
function readConfig(k: usize, kl: usize, o: usize, oc: usize): i32 { return config_get(k, kl, o, oc); }
function readKv(k: usize, kl: usize, o: usize, oc: usize): i32 { return kv_get(k, kl, o, oc); }
function readKvList(k: usize, kl: usize, o: usize, oc: usize): i32 { return kv_list(k, kl, o, oc); }
function readSecret(k: usize, kl: usize, o: usize, oc: usize): i32 { return secrets_get(k, kl, o, oc); }
function readRecall(k: usize, kl: usize, o: usize, oc: usize): i32 { return memory_recall(k, kl, o, oc); }

// The caller-buffer pattern (ABI §3.2): try the answer block, retry once with the size the
// host needed; the answer is at answerPtr, answerLen bytes.
function read(reader: Reader, arg: string): bool {
  setArgs(arg);
  ensureAnswer(256);
  for (let attempt = 0; attempt < 4; attempt++) {
    const out = answerPtr, cap = answerCap;
    const n = reader(arg0, len0, out, cap);
    if (n < 0) { lastStatus = n; return false; }
    if (<usize>n <= cap) { lastStatus = 0; answerLen = n; return true; }
    ensureAnswer(n); // did not fit: nothing was written
  }
  lastStatus = Status.UNAVAILABLE; // the value kept changing size between reads
  return false;
}

function readBytes(reader: Reader, arg: string): ArrayBuffer | null {
  if (!read(reader, arg)) return null;
  const buf = new ArrayBuffer(<i32>answerLen);
  memory.copy(changetype<usize>(buf), answerPtr, answerLen);
  return buf;
}

function readText(reader: Reader, arg: string): string | null {
  return read(reader, arg) ? String.UTF8.decodeUnsafe(answerPtr, answerLen) : null;
}

const STATUS_NAMES = ["NOT_FOUND", "DENIED", "INVALID", "QUOTA", "UNAVAILABLE", "TOO_LARGE"];

/** A §3.3 block the host allocated through omni_alloc: decoded, freed; null on E = 1. */
function takeBlock(packed: i64): string | null {
  const p = packed as u64;
  const ptr = (p >> 32) as usize;
  const len = (p & 0x7fffffff) as usize;
  const text = String.UTF8.decodeUnsafe(ptr, len);
  omni_free(ptr, len);
  if ((p & 0x80000000) != 0) {
    lastStatus = Status.UNAVAILABLE;
    for (let i = 0; i < STATUS_NAMES.length; i++) {
      if (text.startsWith(STATUS_NAMES[i] + ":")) lastStatus = -(i + 1);
    }
    lastError = text;
    return null;
  }
  lastStatus = 0;
  return text;
}

function status(code: i32): bool {
  lastStatus = code < 0 ? code : 0;
  return code >= 0;
}

// ---- omnicore:log ------------------------------------------------------------------------

function writeLog(level: i32, message: string): void {
  setArgs(message);
  log_write(level, arg0, len0);
}

export namespace log {
  export const TRACE: i32 = 0;
  export const DEBUG: i32 = 1;
  export const INFO: i32 = 2;
  export const WARN: i32 = 3;
  export const ERROR: i32 = 4;
  /** Whether a message at `level` would be kept: skip costly formatting when not. */
  export function enabled(level: i32): bool { return log_enabled(level) == 1; }
  export function write(level: i32, message: string): void { writeLog(level, message); }
  export function trace(message: string): void { writeLog(TRACE, message); }
  export function debug(message: string): void { writeLog(DEBUG, message); }
  export function info(message: string): void { writeLog(INFO, message); }
  export function warn(message: string): void { writeLog(WARN, message); }
  export function error(message: string): void { writeLog(ERROR, message); }
}

// ---- omnicore:config, omnicore:kv, omnicore:secrets --------------------------------------

export namespace config {
  /** The value at `key` as text (strings verbatim, other values as JSON; dotted keys walk
   * objects; "" is the whole section), or null when absent. */
  export function get(key: string): string | null { return readText(readConfig, key); }
}

export namespace kv {
  /** The value at `key` as text, or null (lastStatus NOT_FOUND when absent). */
  export function get(key: string): string | null { return readText(readKv, key); }
  export function getBytes(key: string): ArrayBuffer | null { return readBytes(readKv, key); }
  export function set(key: string, value: string): bool {
    setArgs(key, value);
    return status(kv_set(arg0, len0, arg1, len1));
  }
  /** True when the key existed. */
  export function del(key: string): bool {
    setArgs(key);
    const n = kv_delete(arg0, len0);
    return status(n) && n == 1;
  }
  /** Adds `delta` atomically and returns the new value; on failure 0 with lastStatus set
   * (INVALID: overflow, or a value that is not an integer). */
  export function incr(key: string, delta: i64): i64 {
    setArgs(key);
    const out = ensureAnswer(8);
    if (!status(kv_incr(arg0, len0, delta, out))) return 0;
    return load<i64>(out);
  }
  /** The keys with `prefix`, sorted, as a JSON array text. */
  export function list(prefix: string): string | null { return readText(readKvList, prefix); }
}

export namespace secrets {
  /** The secret, or null: lastStatus DENIED (not exposed) or NOT_FOUND (not set). */
  export function get(name: string): string | null { return readText(readSecret, name); }
}

// ---- omnicore:events, omnicore:tasks -----------------------------------------------------

export namespace events {
  export function publish(topic: string, payload: string): bool {
    setArgs(topic, payload);
    return status(events_publish(arg0, len0, arg1, len1));
  }
}

export namespace tasks {
  /** Runs handler `name` of this plugin with `payload` after `delayMs`; the id, or a status. */
  export function enqueue(name: string, payload: string, delayMs: i64 = 0): i64 {
    const h = Utf8.of(name), p = Utf8.of(payload);
    const id = tasks_enqueue(h.ptr, h.len, p.ptr, p.len, delayMs);
    lastStatus = id < 0 ? (id as i32) : 0;
    return id;
  }
  export function cancel(id: i64): bool {
    const n = tasks_cancel(id);
    return status(n) && n == 1;
  }
}

// ---- omnicore:http, omnicore:sql, omnicore:redis -----------------------------------------

export class HttpResponse {
  constructor(
    public status: i32,
    /** `{"status", "headers": {name: value}}` as the host wrote it. */
    public head: string,
    public body: Uint8Array) {}
  /** The body as UTF-8 text. */
  text(): string { return String.UTF8.decodeUnsafe(this.body.dataStart, this.body.byteLength); }
}

// In a test build, omnicore/testing gives the test host its answer for the HTTP request or SQL
// statement about to be sent (kind 0: HTTP, 1: a query, 2: an execute): null in a plugin.
let testAnswer: ((kind: i32, requestJson: string) => void) | null = null;
/** For omnicore/testing only. */
export function __setTestAnswer(answer: (kind: i32, requestJson: string) => void): void { testAnswer = answer; }
function answerFor(kind: i32, requestJson: string): void {
  const answer = testAnswer;
  if (answer != null) answer(kind, requestJson);
}

export namespace http {
  /** `requestJson` is {"method", "url", "headers"?, "timeout_ms"?} or, through a connector,
   * {"method", "connector", "path", ...} (ABI §4.7); null on failure (lastStatus, lastError). */
  export function request(requestJson: string, body: string = ""): HttpResponse | null {
    answerFor(0, requestJson);
    const r = Utf8.of(requestJson), b = Utf8.of(body);
    const packed = <u64>http_request(r.ptr, r.len, b.ptr, b.len);
    const ptr = (packed >> 32) as usize;
    const len = (packed & 0x7fffffff) as usize;
    if ((packed & 0x80000000) != 0 || len < 4) {
      takeBlock(<i64>packed); // frees the block; sets lastStatus and lastError on E = 1
      if (lastStatus == 0) lastStatus = Status.UNAVAILABLE; // too short to hold a head
      return null;
    }
    // head_len: u32 LE, the head's JSON, then the body to the end of the block
    const n = <usize>load<u32>(ptr);
    if (n > len - 4) { omni_free(ptr, len); lastStatus = Status.UNAVAILABLE; return null; }
    const head = String.UTF8.decodeUnsafe(ptr + 4, n);
    const content = new Uint8Array(<i32>(len - 4 - n));
    memory.copy(content.dataStart, ptr + 4 + n, len - 4 - n);
    omni_free(ptr, len);
    const parsed = Json.parse(head);
    const code = parsed != null ? parsed.get("status") : null;
    lastStatus = 0;
    return new HttpResponse(code != null ? <i32>code.num : 0, head, content);
  }
}

export namespace sql {
  export function query(conn: string, requestJson: string): string | null {
    answerFor(1, requestJson);
    const c = Utf8.of(conn), r = Utf8.of(requestJson);
    return takeBlock(sql_query(c.ptr, c.len, r.ptr, r.len));
  }
  export function execute(conn: string, requestJson: string): string | null {
    answerFor(2, requestJson);
    const c = Utf8.of(conn), r = Utf8.of(requestJson);
    return takeBlock(sql_execute(c.ptr, c.len, r.ptr, r.len));
  }
  export function begin(conn: string): i64 {
    const c = Utf8.of(conn);
    const tx = sql_begin(c.ptr, c.len);
    lastStatus = tx < 0 ? (tx as i32) : 0;
    return tx;
  }
  export function commit(tx: i64): bool { return status(sql_commit(tx)); }
  export function rollback(tx: i64): bool { return status(sql_rollback(tx)); }
}

export namespace redis {
  export function command(conn: string, requestJson: string): string | null {
    const c = Utf8.of(conn), r = Utf8.of(requestJson);
    return takeBlock(redis_command(c.ptr, c.len, r.ptr, r.len));
  }
}

// ---- omnicore:mcp (the MCP client of a tool call, specs/abi.md §4.13) ----------------------

export namespace mcp {
  /** Reports `done` of `total` (`total <= 0`: unknown) with a message ("": none) to the
   *  client, if it asked for progress: true when sent, false when nobody listens (outside
   *  MCP, or no progress token; `lastStatus` NOT_FOUND). */
  export function progress(done: f64, total: f64, message: string = ""): bool {
    const m = Utf8.of(message);
    const code = mcp_progress(done, total, m.ptr, m.len);
    lastStatus = code < 0 ? code : 0;
    return code == 0;
  }
  /** Sends `{"method", "params", "key"?}` (MCP's `elicitation/create`,
   *  `sampling/createMessage` or `roots/list`) to the client and waits for its result, at most
   *  until the call's deadline: the result's JSON, or null with `lastStatus` (DENIED: the grant
   *  does not allow that question; UNAVAILABLE: no MCP client waits on this call, it lacks the
   *  capability, or it did not answer in time) and the host's message in `lastError`. */
  export function ask(requestJson: string): string | null {
    const r = Utf8.of(requestJson);
    return takeBlock(mcp_ask(r.ptr, r.len));
  }
}

// ---- omnicore:memory, omnicore:vectors ---------------------------------------------------

// Named apart from the builtin `memory` (memory.copy ...), exported as `memory` below.
namespace tieredMemory {
  export const WORKING: i32 = 0;
  export const SHORT_TERM: i32 = 1;
  export const LONG_TERM: i32 = 2;
  /** `itemJson` is {"text", "metadata"?, "ttl_s"?, "importance"?, "vector"?}; the id or a status. */
  export function remember(tier: i32, itemJson: string): i64 {
    const i = Utf8.of(itemJson);
    const id = memory_remember(tier, i.ptr, i.len);
    lastStatus = id < 0 ? (id as i32) : 0;
    return id;
  }
  /** `queryJson` is {"query", "tiers"?, "limit"?, "filter"?, "vector"?}; a JSON array text. */
  export function recall(queryJson: string): string | null { return readText(readRecall, queryJson); }
  export function forget(id: i64): bool {
    const n = memory_forget(id);
    return status(n) && n == 1;
  }
}

export namespace vectors {
  /** `metaJson` is a JSON object or "". */
  export function upsert(collection: string, id: string, vector: Float32Array, metaJson: string = ""): bool {
    const c = Utf8.of(collection), i = Utf8.of(id), m = Utf8.of(metaJson);
    return status(vectors_upsert(c.ptr, c.len, i.ptr, i.len, vector.dataStart, vector.length, m.ptr, m.len));
  }
  /** The `k` nearest as JSON [{"id", "score", "metadata"}], best first. */
  export function search(collection: string, vector: Float32Array, k: i32): string | null {
    const c = Utf8.of(collection);
    return takeBlock(vectors_search(c.ptr, c.len, vector.dataStart, vector.length, k));
  }
  export function query(collection: string, vector: Float32Array, k: i32, filterJson: string): string | null {
    const c = Utf8.of(collection), f = Utf8.of(filterJson);
    return takeBlock(vectors_query(c.ptr, c.len, vector.dataStart, vector.length, k, f.ptr, f.len));
  }
  export function del(collection: string, id: string): bool {
    const c = Utf8.of(collection), i = Utf8.of(id);
    const n = vectors_delete(c.ptr, c.len, i.ptr, i.len);
    return status(n) && n == 1;
  }
}

export { tieredMemory as memory };

import { Json, utf8Bound, writeUtf8 } from "./json";
export { Json, JsonKind, quote } from "./json";

// ---- HTTP routes (specs/http-routes.md): route.ts --------------------------------------------

export { Request, Response, route } from "./route";

// The fs grant's directories through WASI (fs.ts): fs.readText("/data/a.txt"), ...
import * as fs from "./fs";
export { fs };
export { FileStat } from "./fs";
