// An Extism plugin written with the official AssemblyScript PDK (@extism/as-pdk), built at
// test time by tests/extism/conftest.py and compared with the Extism Python SDK.
import { Config, Host, LogLevel, Memory, Var } from "@extism/as-pdk";

@external("extism:host/env", "input_offset")
declare function input_offset(): u64;
@external("extism:host/env", "input_length")
declare function input_length(): u64;
@external("extism:host/env", "output_set")
declare function output_set(offset: u64, length: u64): void;
@external("extism:host/env", "error_set")
declare function error_set(offset: u64): void;
@external("extism:host/user", "shout")
declare function shout(offset: u64): u64;

export function myAbort(message: string | null, fileName: string | null, line: u32,
                        column: u32): void {
  const m = Memory.allocateString(message == null ? "abort" : message);
  error_set(m.offset);
  unreachable();
}

// The PDK's own example, unchanged in substance.
export function count_vowels(): i32 {
  const str = Host.inputString();
  let count = 0;
  for (let i = 0; i < str.length; i++) {
    const x: string = str[i];
    if (x == "a" || x == "A" || x == "e" || x == "E" || x == "i" || x == "I" ||
        x == "o" || x == "O" || x == "u" || x == "U") {
      count += 1;
    }
  }
  Host.outputString('{"count": ' + count.toString() + "}");
  return 0;
}

// The idiomatic echo: copy the input in, then out (what a PDK user writes).
export function echo(): i32 {
  Host.output(Host.input());
  return 0;
}

// The fastest echo a peer could write: the output is the input block itself.
export function echo_fast(): i32 {
  output_set(input_offset(), input_length());
  return 0;
}

export function fail(): i32 {
  const m = Memory.allocateString("failed on purpose: " + Host.inputString());
  error_set(m.offset);
  return 1;
}

export function code(): i32 {
  return 42;
}

export function config(): i32 {
  const v = Config.get(Host.inputString());
  Host.outputString(v == null ? "<none>" : v);
  return 0;
}

// Vars persist across calls of one instance.
export function counter(): i32 {
  const prev = Var.getString("count");
  const n = (prev == null ? 0 : I32.parseInt(prev)) + 1;
  Var.set("count", Uint8Array.wrap(String.UTF8.encode(n.toString())));
  Host.outputString(n.toString());
  return 0;
}

// Stores input-sized values until the var store is full.
export function fill_vars(): i32 {
  const value = Host.input();
  for (let i = 0; i < 1000; i++) {
    Var.set("k" + i.toString(), value);
  }
  Host.outputString("stored");
  return 0;
}

export function log(): i32 {
  Host.log(LogLevel.Info, "info: " + Host.inputString());
  Host.log(LogLevel.Warn, "warn: " + Host.inputString());
  Host.outputString("logged");
  return 0;
}

export function user(): i32 {
  const m = Memory.allocateString(Host.inputString());
  const out = shout(m.offset);
  Host.outputMemory(new Memory(out, lengthOf(out)));
  return 0;
}

@external("extism:host/env", "length")
declare function lengthOf(offset: u64): u64;

export function abort_me(): i32 {
  throw new Error("the plugin aborted");
  return 0;
}

@external("extism:host/env", "http_request")
declare function http_request(req: u64, body: u64): u64;
@external("extism:host/env", "http_status_code")
declare function http_status_code(): i32;
@external("extism:host/env", "http_headers")
declare function http_headers(): u64;

function textOf(offset: u64): string {
  return offset == 0 ? "" : new Memory(offset, lengthOf(offset)).toString();
}

// The input is Extism's HttpRequest JSON ({"url", "method", "headers"}), then optionally a
// newline and the request body; the output is "STATUS BODY".
export function http(): i32 {
  const input = Host.inputString();
  const nl = input.indexOf("\n");
  const req = Memory.allocateString(nl < 0 ? input : input.substring(0, nl));
  const body: u64 = nl < 0 ? 0 : Memory.allocateString(input.substring(nl + 1)).offset;
  const res = http_request(req.offset, body);
  Host.outputString(http_status_code().toString() + " " + textOf(res));
  return 0;
}

// The same request, then the response headers Extism hands the plugin ("<none>" for 0).
export function http_head(): i32 {
  const req = Memory.allocateString(Host.inputString());
  http_request(req.offset, 0);
  const headers = http_headers();
  Host.outputString(headers == 0 ? "<none>" : textOf(headers));
  return 0;
}

// The status of the last request this instance made (0 before any).
export function http_last_status(): i32 {
  Host.outputString(http_status_code().toString());
  return 0;
}
