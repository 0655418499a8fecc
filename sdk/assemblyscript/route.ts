// HTTP route handlers (specs/http-routes.md §2, §3, §8).
//
// A route handler answers the HTTP requests an operator maps to it. It is an ordinary
// handler whose input is the host's request envelope and whose output the response block;
// `route` decodes and encodes them, so the function sees a `Request` and returns a `Response`:
//
//     export function hello(ptr: usize, len: usize): u64 {
//       return route(ptr, len, (req: Request): Response => Response.text("hello " + req.param("name", "world")));
//     }
//
// A malformed envelope is answered 400 (the function is not called) and `Response.error(...)`
// 500 with a short text body (the message goes to the plugin's log, never to the client): the
// call itself never fails, so the route answers whatever happens.
import { Json } from "./json";
import { log, okBytes } from "./index";

/** An HTTP request on a route (specs/http-routes.md §2). */
export class Request {
  /** Upper case, as sent. */
  method: string = "";
  /** After the routes' prefix, percent-decoded, starting with "/". */
  path: string = "";
  /** The raw query string without "?" ("" when none). */
  query: string = "";
  route: string = "";
  url: string = "";
  remote: string = "";
  /** What the host checked: `{"mode": "public" | "token" | "github" | "stripe", ...}`. */
  auth: Json = Json.object();
  params: Json = Json.object();
  /** Lower-case names (read with `header`, which ignores case). */
  headers: Json = Json.object();
  body: Uint8Array = new Uint8Array(0);
  // The query read by form rules, blank values kept: queryNames[i] = queryValues[i].
  queryNames: string[] = [];
  queryValues: string[] = [];

  /** The path variable `name` ("/notes/{id}" -> "id"), or `fallback`. */
  param(name: string, fallback: string | null = null): string | null {
    const v = this.params.get(name);
    return v != null && v.isString() ? v.str : fallback;
  }

  /** The value of header `name` in any case ("User-Agent"), or `fallback`. */
  header(name: string, fallback: string | null = null): string | null {
    const want = name.toLowerCase();
    for (let i = 0; i < this.headers.keys.length; i++) {
      const v = this.headers.items[i];
      if (this.headers.keys[i].toLowerCase() == want && v.isString()) return v.str;
    }
    return fallback;
  }

  /** The first value of query parameter `name`, or `fallback`. */
  queryParam(name: string, fallback: string | null = null): string | null {
    for (let i = 0; i < this.queryNames.length; i++) if (this.queryNames[i] == name) return this.queryValues[i];
    return fallback;
  }

  /** Every value of query parameter `name`, in order (empty when absent). */
  queryAll(name: string): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.queryNames.length; i++) if (this.queryNames[i] == name) out.push(this.queryValues[i]);
    return out;
  }

  /** The body as UTF-8 text (invalid sequences replaced). */
  text(): string {
    return String.UTF8.decodeUnsafe(this.body.dataStart, this.body.byteLength);
  }

  /** The body parsed as JSON, or null (`Json.error` says why). */
  json(): Json | null {
    return Json.parse(this.text());
  }
}

/** A route's answer (specs/http-routes.md §3). A header set twice is sent once per value. */
export class Response {
  status: i32 = 200;
  headerNames: string[] = [];
  headerValues: string[] = [];
  body: Uint8Array = new Uint8Array(0);
  /** Set by `Response.error`: answered 500, this logged. */
  failure: string | null = null;

  constructor(status: i32 = 200) {
    this.status = status;
  }

  /** `text/plain; charset=utf-8`. */
  static text(text: string, status: i32 = 200): Response {
    return new Response(status).header("content-type", "text/plain; charset=utf-8").bytes(Uint8Array.wrap(String.UTF8.encode(text)));
  }

  /** `application/json` with `value`'s JSON text. */
  static json(value: Json, status: i32 = 200): Response {
    return new Response(status).header("content-type", "application/json").bytes(Uint8Array.wrap(String.UTF8.encode(value.toString())));
  }

  /** A status with an empty body. */
  static status(status: i32): Response {
    return new Response(status);
  }

  /** The function failed: answered 500 "internal error"; `message` goes to the plugin's log. */
  static error(message: string): Response {
    const r = new Response(500);
    r.failure = message;
    return r;
  }

  /** Adds header `name` (lower-cased); returns this for chaining. */
  header(name: string, value: string): Response {
    this.headerNames.push(name.toLowerCase());
    this.headerValues.push(value);
    return this;
  }

  /** Sets the body; returns this for chaining. */
  bytes(body: Uint8Array): Response {
    this.body = body;
    return this;
  }
}

function hexDigit(c: i32): i32 {
  if (c >= 48 && c <= 57) return c - 48;
  c |= 0x20;
  return c >= 97 && c <= 102 ? c - 87 : -1;
}

// `s` form-decoded: "+" is a space, "%XX" a byte (the bytes read as UTF-8); a stray "%" is
// kept as sent.
function unescape(s: string): string {
  const raw = Uint8Array.wrap(String.UTF8.encode(s));
  const out = new Uint8Array(raw.length);
  let o = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = <i32>raw[i];
    if (c == 43) out[o++] = 32;
    else if (c == 37 && i + 2 < raw.length && hexDigit(raw[i + 1]) >= 0 && hexDigit(raw[i + 2]) >= 0) {
      out[o++] = <u8>(hexDigit(raw[i + 1]) * 16 + hexDigit(raw[i + 2]));
      i += 2;
    } else out[o++] = <u8>c;
  }
  return String.UTF8.decodeUnsafe(out.dataStart, o);
}

function stringOf(head: Json, key: string): string {
  const v = head.get(key);
  return v != null && v.isString() ? v.str : "";
}

function objectOf(head: Json, key: string): Json {
  const v = head.get(key);
  return v != null && v.isObject() ? v : Json.object();
}

// Why the last `decode` answered null.
let malformed: string = "";

/** The request envelope at (ptr, len), or null with the reason in `malformed`. */
function decode(ptr: usize, len: usize): Request | null {
  if (len < 4) { malformed = "too short for a request envelope"; return null; }
  const n = <usize>load<u32>(ptr); // wasm is little-endian, as the envelope's length is
  if (n > len - 4) { malformed = "the head is longer than the envelope"; return null; }
  const head = Json.parse(String.UTF8.decodeUnsafe(ptr + 4, n));
  if (head == null) { malformed = "the head is not JSON (" + Json.error + ")"; return null; }
  if (!head.isObject()) { malformed = "the head is not a JSON object"; return null; }
  const method = head.get("method"), path = head.get("path");
  if (method == null || !method.isString() || path == null || !path.isString()) {
    malformed = "the head has no \"method\" and \"path\" strings";
    return null;
  }
  const req = new Request();
  req.method = method.str;
  req.path = path.str;
  req.query = stringOf(head, "query");
  req.route = stringOf(head, "route");
  req.url = stringOf(head, "url");
  req.remote = stringOf(head, "remote");
  req.params = objectOf(head, "params");
  req.headers = objectOf(head, "headers");
  const auth = head.get("auth");
  if (auth != null && auth.isObject()) req.auth = auth;
  else req.auth.set("mode", Json.str("public"));
  const parts = req.query.split("&");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    if (part.length == 0) continue;
    const eq = part.indexOf("=");
    req.queryNames.push(unescape(eq < 0 ? part : part.substring(0, eq)));
    req.queryValues.push(eq < 0 ? "" : unescape(part.substring(eq + 1)));
  }
  const body = new Uint8Array(<i32>(len - 4 - n));
  memory.copy(body.dataStart, ptr + 4 + n, len - 4 - n);
  req.body = body;
  return req;
}

/** The response block: head length (u32 LE), `{"status": N, "headers": {...}}`, body. */
function encode(res: Response): Uint8Array {
  const headers = Json.object();
  for (let i = 0; i < res.headerNames.length; i++) {
    const name = res.headerNames[i], value = Json.str(res.headerValues[i]);
    const had = headers.get(name);
    if (had == null) headers.set(name, value);
    else if (had.isArray()) had.push(value);
    else headers.set(name, Json.array().push(had).push(value));
  }
  const head = Uint8Array.wrap(String.UTF8.encode(
    Json.object().set("status", Json.int(res.status)).set("headers", headers).toString()));
  const out = new Uint8Array(4 + head.length + res.body.length);
  store<u32>(out.dataStart, <u32>head.length);
  out.set(head, 4);
  out.set(res.body, 4 + head.length);
  return out;
}

/** Answers a route handler's call: decodes the envelope at (ptr, len), runs `fn` on it and
 *  answers its response block. */
export function route(ptr: usize, len: usize, fn: (req: Request) => Response): u64 {
  const req = decode(ptr, len);
  if (req == null) return okBytes(encode(Response.text("malformed request envelope: " + malformed, 400)));
  let res = fn(req);
  const failure = res.failure;
  if (failure != null) {
    log.error("route handler failed: " + failure);
    res = Response.text("internal error", 500);
  }
  return okBytes(encode(res));
}
