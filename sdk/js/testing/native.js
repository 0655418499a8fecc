// The "omnicore:native" module for Node: the same functions the QuickJS runtime's C shim
// (runtime/omnicore_js.c) gives runtime/api.js, answered by the current TestHost instead of
// the wasm host. api.js itself is loaded unchanged, so a handler meets the same wrappers,
// conversions and OmniHostError statuses in `node --test` as in omnicore.
import { current } from "./state.js";

const NOT_FOUND = -1, DENIED = -2, INVALID = -3, UNAVAILABLE = -5;
const LEVELS = ["trace", "debug", "info", "warn", "error"];
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const bytesOf = (v) => (typeof v === "string" ? encoder.encode(v)
  : v instanceof ArrayBuffer ? new Uint8Array(v.slice(0))
  : v instanceof Uint8Array ? new Uint8Array(v) : encoder.encode(String(v)));
const textOf = (v) => (typeof v === "string" ? v : decoder.decode(bytesOf(v)));

export function logWrite(level, message) {
  const host = current();
  if (level >= host.logLevel) host.logs.push({ level: LEVELS[level] ?? "info", message });
}

export function logEnabled(level) { return level >= current().logLevel; }

/** §4.2: a dotted key; strings verbatim, other values as compact JSON; "" = the section. */
export function configGet(key) {
  let value = current().config;
  if (key !== "") {
    for (const part of key.split(".")) {
      if (value === null || typeof value !== "object" || !Object.hasOwn(value, part)) return NOT_FOUND;
      value = value[part];
    }
  }
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function kvGet(key) {
  const kv = current().kv;
  return kv.has(key) ? new Uint8Array(kv.get(key)) : NOT_FOUND;
}

export function kvSet(key, value) { current().kv.set(key, bytesOf(value)); return 0; }

export function kvDelete(key) { return current().kv.delete(key) ? 1 : 0; }

/** [status, value]: the stored value must be a decimal integer, as on the host. */
export function kvIncr(key, delta) {
  const kv = current().kv;
  const old = kv.has(key) ? decoder.decode(kv.get(key)) : "0";
  if (!/^-?\d+$/.test(old)) return [INVALID, 0];
  const next = BigInt(old) + BigInt(delta);
  if (next > 2n ** 63n - 1n || next < -(2n ** 63n)) return [INVALID, 0];
  kv.set(key, encoder.encode(next.toString()));
  return [0, Number.isSafeInteger(Number(next)) ? Number(next) : next];
}

export function kvList(prefix) {
  return JSON.stringify([...current().kv.keys()].filter((k) => k.startsWith(prefix)).sort()
    .slice(0, 1000));
}

// Agent memory and vectors need the real host's stores: test those through omnicore.
export function memRemember() { return UNAVAILABLE; }
export function memRecall() { return UNAVAILABLE; }
export function memForget() { return UNAVAILABLE; }
export function vecUpsert() { return UNAVAILABLE; }
export function vecSearch() { throw new Error("UNAVAILABLE: vectors are not in the test host"); }
export function vecDelete() { return UNAVAILABLE; }

export function tasksEnqueue(handler, payload, delayMs) {
  const host = current();
  if (host.handlers && !host.handlers.includes(handler)) return INVALID;
  const id = host.tasks.length + 1;
  host.tasks.push({ id, handler, payload: bytesOf(payload), delayMs: Number(delayMs),
    cancelled: false });
  return id;
}

export function tasksCancel(id) {
  const task = current().tasks.find((t) => t.id === Number(id) && !t.cancelled);
  if (!task) return 0;
  task.cancelled = true;
  return 1;
}

/** §4.7's response block: u32 LE head length, the JSON head, the body. */
export function httpRequest(request, body) {
  const host = current();
  const req = JSON.parse(textOf(request));
  if (typeof host.http !== "function") {
    throw new Error(`DENIED: ${req.url ?? req.connector} (the TestHost has no http function)`);
  }
  const res = host.http({ ...req, body: bytesOf(body) });
  const head = encoder.encode(JSON.stringify({ status: res.status ?? 200,
    headers: res.headers ?? {} }));
  const payload = bytesOf(res.body ?? "");
  const block = new Uint8Array(4 + head.length + payload.length);
  new DataView(block.buffer).setUint32(0, head.length, true);
  block.set(head, 4);
  block.set(payload, 4 + head.length);
  return block;
}

export function eventsPublish(topic, payload) {
  current().events.push({ topic, payload: bytesOf(payload) });
  return 0;
}

/** Exposed names answer their bytes (null: exposed but not set); any other is DENIED. */
export function secretsGet(name) {
  const secrets = current().secrets;
  if (!Object.hasOwn(secrets, name)) return DENIED;
  return secrets[name] === null ? NOT_FOUND : bytesOf(secrets[name]);
}

export function input() {
  const data = current().input;
  if (data === null) throw new TypeError("bytes() is only available during a handler call");
  return new Uint8Array(data);
}

export function utf8Encode(s) { return encoder.encode(s); }
export function utf8Decode(b) { return decoder.decode(bytesOf(b)); }
export function linked() { return 0x1ff; }
