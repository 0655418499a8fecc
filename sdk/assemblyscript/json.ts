// A small, strict JSON reader and writer (RFC 8259, nesting depth 64): AssemblyScript has no
// JSON of its own. `Json.parse(text)` gives a tree or null (`Json.error` says why);
// `Json.object().set(...)`, `Json.str`, `Json.int`, ... build one; `toString()` writes it.

export enum JsonKind { Null, Bool, Number, String, Array, Object }

const MAX_DEPTH = 64;
// Scalars share these (never written to): a call allocates arrays only for containers.
const NO_ITEMS: Json[] = [];
const NO_KEYS: string[] = [];
// Where parseInt64 leaves its integer.
let parsedInt: i64 = 0;
// The parser Json.parse reuses.
let parser: Parser | null = null;

export class Json {
  kind: JsonKind = JsonKind.Null;
  bool: bool = false;
  num: f64 = 0;
  /** A number's text as written, so integers keep all 64 bits. */
  raw: string = "";
  str: string = "";
  items: Json[] = NO_ITEMS;
  keys: string[] = NO_KEYS;

  /** Why the last `parse` answered null, and at which character. */
  static error: string = "";
  static errorAt: i32 = 0;

  static parse(text: string): Json | null {
    Json.error = "";
    // One parser for every parse (made at the first, not at start-up: top-level statements
    // may parse before this file's globals are set): a call allocates only the tree.
    let p = parser;
    if (p == null) parser = p = new Parser(text);
    else { p.text = text; p.i = 0; }
    let value = p.value(0);
    if (value != null) {
      p.space();
      if (p.i < text.length) { p.fail("unexpected text after the value"); value = null; }
    }
    p.text = "";  // the input is the caller's to keep or drop
    return value;
  }

  static null_(): Json { return new Json(); }
  static boolean(b: bool): Json { const j = new Json(); j.kind = JsonKind.Bool; j.bool = b; return j; }
  static str(s: string): Json { const j = new Json(); j.kind = JsonKind.String; j.str = s; return j; }
  static num(n: f64): Json { const j = new Json(); j.kind = JsonKind.Number; j.num = n; j.raw = n.toString(); return j; }
  static int(n: i64): Json { const j = new Json(); j.kind = JsonKind.Number; j.num = n as f64; j.raw = n.toString(); return j; }
  static object(): Json { const j = new Json(); j.kind = JsonKind.Object; j.items = []; j.keys = []; return j; }
  static array(): Json { const j = new Json(); j.kind = JsonKind.Array; j.items = []; return j; }

  isNull(): bool { return this.kind == JsonKind.Null; }
  isString(): bool { return this.kind == JsonKind.String; }
  isObject(): bool { return this.kind == JsonKind.Object; }
  isArray(): bool { return this.kind == JsonKind.Array; }
  isNumber(): bool { return this.kind == JsonKind.Number; }

  /** An object's member, or null when absent (or this is not an object). */
  get(key: string): Json | null {
    if (this.kind != JsonKind.Object) return null;
    for (let i = this.keys.length - 1; i >= 0; i--) if (this.keys[i] == key) return this.items[i];
    return null;
  }

  /** Sets an object's member (replacing one of the same key); returns this for chaining. */
  set(key: string, value: Json): Json {
    assert(this.kind == JsonKind.Object, "Json.set on a value that is not an object");
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) { this.items[i] = value; return this; }
    }
    this.keys.push(key);
    this.items.push(value);
    return this;
  }

  push(value: Json): Json {
    assert(this.kind == JsonKind.Array, "Json.push on a value that is not an array");
    this.items.push(value);
    return this;
  }

  /** Whether this is a number written as an integer that fits in 64 bits. */
  isInteger(): bool { return this.kind == JsonKind.Number && parseInt64(this.raw); }
  /** The integer (check `isInteger` first). */
  asInt(): i64 { parseInt64(this.raw); return parsedInt; }

  toString(): string {
    const parts: string[] = [];
    this.pieces(parts);
    return parts.join("");
  }

  /** Pushes this value's JSON text onto `parts`, piece by piece (one join at the end). */
  pieces(parts: string[]): void {
    switch (this.kind) {
      case JsonKind.Null: parts.push("null"); break;
      case JsonKind.Bool: parts.push(this.bool ? "true" : "false"); break;
      case JsonKind.Number: parts.push(this.raw); break;
      case JsonKind.String: pushQuoted(parts, this.str); break;
      case JsonKind.Array: {
        parts.push("[");
        for (let i = 0; i < this.items.length; i++) {
          if (i > 0) parts.push(",");
          this.items[i].pieces(parts);
        }
        parts.push("]");
        break;
      }
      default: {
        parts.push("{");
        for (let i = 0; i < this.keys.length; i++) {
          if (i > 0) parts.push(",");
          pushQuoted(parts, this.keys[i]);
          parts.push(":");
          this.items[i].pieces(parts);
        }
        parts.push("}");
      }
    }
  }
}

// ---- straight to UTF-8 (okJson): no pieces, no intermediate strings -------------------------

/** At least the bytes `writeUtf8` writes for `value` (a UTF-16 unit is at most 6 bytes, as
 *  `\u00XX`; a pair at most 4). */
export function utf8Bound(value: Json): usize {
  switch (value.kind) {
    case JsonKind.Null: case JsonKind.Bool: return 5;
    case JsonKind.Number: return <usize>value.raw.length;
    case JsonKind.String: return 2 + 6 * <usize>value.str.length;
    default: {
      let n: usize = 2 + <usize>value.items.length * 2;
      for (let i = 0; i < value.items.length; i++) {
        n += utf8Bound(unchecked(value.items[i]));
        if (value.kind == JsonKind.Object) n += 2 + 6 * <usize>unchecked(value.keys[i]).length;
      }
      return n;
    }
  }
}

/** Writes `value`'s JSON text as UTF-8 at `at` (room for `utf8Bound` bytes); the end. The
 *  bytes are those of `toString()` encoded as `String.UTF8.encode` does (WTF-8: a lone
 *  surrogate as its 3 bytes). */
export function writeUtf8(value: Json, at: usize): usize {
  switch (value.kind) {
    case JsonKind.Null: return writeAscii("null", at);
    case JsonKind.Bool: return writeAscii(value.bool ? "true" : "false", at);
    case JsonKind.Number: return writeAscii(value.raw, at);
    case JsonKind.String: return writeQuoted(value.str, at);
    case JsonKind.Array: {
      store<u8>(at++, 0x5b);
      for (let i = 0; i < value.items.length; i++) {
        if (i > 0) store<u8>(at++, 0x2c);
        at = writeUtf8(unchecked(value.items[i]), at);
      }
      store<u8>(at++, 0x5d);
      return at;
    }
    default: {
      store<u8>(at++, 0x7b);
      for (let i = 0; i < value.keys.length; i++) {
        if (i > 0) store<u8>(at++, 0x2c);
        at = writeQuoted(unchecked(value.keys[i]), at);
        store<u8>(at++, 0x3a);
        at = writeUtf8(unchecked(value.items[i]), at);
      }
      store<u8>(at++, 0x7d);
      return at;
    }
  }
}

// Text that is ASCII by construction (numbers, literals).
function writeAscii(s: string, at: usize): usize {
  const p = changetype<usize>(s);
  for (let i = 0, n = s.length; i < n; i++) store<u8>(at + <usize>i, load<u16>(p + (<usize>i << 1)));
  return at + <usize>s.length;
}

@inline function hexDigit(d: u32): u32 { return d < 10 ? 0x30 + d : 0x57 + d; }

// `s` as a JSON string literal in UTF-8, escaping as pushQuoted does.
function writeQuoted(s: string, at: usize): usize {
  store<u8>(at++, 0x22);
  const p = changetype<usize>(s);
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = <u32>load<u16>(p + (<usize>i << 1));
    if (c < 0x80) {
      if (c >= 0x20 && c != 0x22 && c != 0x5c) { store<u8>(at++, c); continue; }
      store<u8>(at++, 0x5c);
      if (c == 0x22 || c == 0x5c) store<u8>(at++, c);
      else if (c == 0x0a) store<u8>(at++, 0x6e);
      else if (c == 0x0d) store<u8>(at++, 0x72);
      else if (c == 0x09) store<u8>(at++, 0x74);
      else {
        store<u8>(at, 0x75); store<u8>(at + 1, 0x30); store<u8>(at + 2, 0x30);
        store<u8>(at + 3, hexDigit(c >> 4)); store<u8>(at + 4, hexDigit(c & 15));
        at += 5;
      }
    } else if (c < 0x800) {
      store<u8>(at, 0xc0 | (c >> 6)); store<u8>(at + 1, 0x80 | (c & 0x3f));
      at += 2;
    } else {
      if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
        const d = <u32>load<u16>(p + (<usize>(i + 1) << 1));
        if (d >= 0xdc00 && d < 0xe000) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          store<u8>(at, 0xf0 | (cp >> 18)); store<u8>(at + 1, 0x80 | ((cp >> 12) & 0x3f));
          store<u8>(at + 2, 0x80 | ((cp >> 6) & 0x3f)); store<u8>(at + 3, 0x80 | (cp & 0x3f));
          at += 4;
          i++;
          continue;
        }
      }
      store<u8>(at, 0xe0 | (c >> 12)); store<u8>(at + 1, 0x80 | ((c >> 6) & 0x3f));
      store<u8>(at + 2, 0x80 | (c & 0x3f));
      at += 3;
    }
  }
  store<u8>(at++, 0x22);
  return at;
}

/** `s` as a JSON string literal. */
export function quote(s: string): string {
  const parts: string[] = [];
  pushQuoted(parts, s);
  return parts.join("");
}

/** Pushes `s` as a JSON string literal onto `parts`: runs of plain text as one piece each. */
export function pushQuoted(parts: string[], s: string): void {
  parts.push("\"");
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    if (i > run) parts.push(s.substring(run, i));
    if (c == 0x22) parts.push("\\\"");
    else if (c == 0x5c) parts.push("\\\\");
    else if (c == 0x0a) parts.push("\\n");
    else if (c == 0x0d) parts.push("\\r");
    else if (c == 0x09) parts.push("\\t");
    else parts.push("\\u00" + (c < 0x10 ? "0" : "") + c.toString(16));
    run = i + 1;
  }
  parts.push(run == 0 ? s : s.substring(run));
  parts.push("\"");
}

// An integer's decimal text (no fraction, no exponent) into parsedInt; false when it is not
// one or does not fit in 64 bits. Accumulates negatively so that i64.MIN_VALUE fits.
function parseInt64(raw: string): bool {
  let i = 0;
  const negative = raw.length > 0 && raw.charCodeAt(0) == 0x2d;
  if (negative) i = 1;
  if (i >= raw.length) return false;
  let acc: i64 = 0;
  for (; i < raw.length; i++) {
    const d = raw.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return false;
    if (acc < (i64.MIN_VALUE + d) / 10) return false;
    acc = acc * 10 - d;
  }
  if (!negative) {
    if (acc == i64.MIN_VALUE) return false;
    acc = -acc;
  }
  parsedInt = acc;
  return true;
}

class Parser {
  i: i32 = 0;
  constructor(public text: string) {}

  fail(why: string): Json | null {
    // the innermost failure says the most; the callers above it only pass the null on
    if (Json.error == "") { Json.error = why; Json.errorAt = this.i; }
    return null;
  }

  space(): void {
    while (this.i < this.text.length) {
      const c = this.text.charCodeAt(this.i);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
      this.i++;
    }
  }

  value(depth: i32): Json | null {
    if (depth > MAX_DEPTH) return this.fail("nesting deeper than 64");
    this.space();
    if (this.i >= this.text.length) return this.fail("expected a value");
    const c = this.text.charCodeAt(this.i);
    if (c == 0x7b) return this.object(depth);
    if (c == 0x5b) return this.array(depth);
    if (c == 0x22) {
      const s = this.string();
      return s == null ? null : Json.str(s);
    }
    if (this.word("true")) return Json.boolean(true);
    if (this.word("false")) return Json.boolean(false);
    if (this.word("null")) return Json.null_();
    return this.number();
  }

  word(w: string): bool {
    if (this.text.substr(this.i, w.length) != w) return false;
    this.i += w.length;
    return true;
  }

  digits(): i32 {
    const start = this.i;
    while (this.i < this.text.length) {
      const c = this.text.charCodeAt(this.i);
      if (c < 0x30 || c > 0x39) break;
      this.i++;
    }
    return this.i - start;
  }

  number(): Json | null {
    const start = this.i;
    if (this.text.charCodeAt(this.i) == 0x2d) this.i++;
    const first = this.text.charCodeAt(this.i);
    const n = this.digits();
    if (n == 0 || (first == 0x30 && n > 1)) return this.fail("invalid number");
    if (this.i < this.text.length && this.text.charCodeAt(this.i) == 0x2e) {
      this.i++;
      if (this.digits() == 0) return this.fail("invalid number");
    }
    if (this.i < this.text.length && (this.text.charCodeAt(this.i) | 0x20) == 0x65) {
      this.i++;
      const sign = this.text.charCodeAt(this.i);
      if (sign == 0x2b || sign == 0x2d) this.i++;
      if (this.digits() == 0) return this.fail("invalid number");
    }
    const j = new Json();
    j.kind = JsonKind.Number;
    j.raw = this.text.substring(start, this.i);
    j.num = parseFloat(j.raw);
    return j;
  }

  hex4(): i32 {
    if (this.i + 4 > this.text.length) return -1;
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = this.text.charCodeAt(this.i + k);
      let d = -1;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66) d = (c | 0x20) - 0x61 + 10;
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    this.i += 4;
    return v;
  }

  string(): string | null {
    this.i++; // the opening quote
    // Most strings have no escape: one substring, no parts. The scan runs on locals and raw
    // loads (the bulk of a parse is here: a field access and a checked charCodeAt per unit
    // cost as much again).
    const begin = this.i;
    const text = this.text;
    const base = changetype<usize>(text);
    const n = text.length;
    let i = begin;
    while (i < n) {
      const c = load<u16>(base + (<usize>i << 1));
      if (c == 0x22) { this.i = i + 1; return text.substring(begin, i); }
      if (c == 0x5c || c < 0x20) break;
      i++;
    }
    this.i = i;
    const parts: string[] = [];
    let run = begin;
    while (this.i < this.text.length) {
      const c = this.text.charCodeAt(this.i);
      if (c == 0x22) {
        parts.push(this.text.substring(run, this.i));
        this.i++;
        return parts.join("");
      }
      if (c < 0x20) { this.fail("control character in a string"); return null; }
      if (c != 0x5c) { this.i++; continue; }
      parts.push(this.text.substring(run, this.i));
      this.i++;
      const e = this.text.charCodeAt(this.i);
      this.i++;
      if (e == 0x22) parts.push("\"");
      else if (e == 0x5c) parts.push("\\");
      else if (e == 0x2f) parts.push("/");
      else if (e == 0x62) parts.push("\b");
      else if (e == 0x66) parts.push("\f");
      else if (e == 0x6e) parts.push("\n");
      else if (e == 0x72) parts.push("\r");
      else if (e == 0x74) parts.push("\t");
      else if (e == 0x75) {
        const u = this.hex4();
        if (u < 0) { this.fail("invalid \\u escape"); return null; }
        if (u >= 0xd800 && u < 0xdc00) {
          if (!this.word("\\u")) { this.fail("lone surrogate escape"); return null; }
          const low = this.hex4();
          if (low < 0xdc00 || low >= 0xe000) { this.fail("lone surrogate escape"); return null; }
          parts.push(String.fromCharCodes([u, low]));
        } else if (u >= 0xdc00 && u < 0xe000) {
          this.fail("lone surrogate escape");
          return null;
        } else {
          parts.push(String.fromCharCode(u));
        }
      } else { this.fail("invalid escape"); return null; }
      run = this.i;
    }
    this.fail("unterminated string");
    return null;
  }

  array(depth: i32): Json | null {
    this.i++;
    const arr = Json.array();
    this.space();
    if (this.i < this.text.length && this.text.charCodeAt(this.i) == 0x5d) { this.i++; return arr; }
    while (true) {
      const item = this.value(depth + 1);
      if (item == null) return null;
      arr.items.push(item);
      this.space();
      if (this.i >= this.text.length) return this.fail("unterminated array");
      const c = this.text.charCodeAt(this.i++);
      if (c == 0x5d) return arr;
      if (c != 0x2c) return this.fail("expected ',' or ']'");
    }
  }

  object(depth: i32): Json | null {
    this.i++;
    const obj = new Json();
    obj.kind = JsonKind.Object;
    // Room for a few members up front: no buffer grows for a small object.
    obj.keys = new Array<string>(4);
    obj.keys.length = 0;
    obj.items = new Array<Json>(4);
    obj.items.length = 0;
    this.space();
    if (this.i < this.text.length && this.text.charCodeAt(this.i) == 0x7d) { this.i++; return obj; }
    while (true) {
      this.space();
      if (this.i >= this.text.length || this.text.charCodeAt(this.i) != 0x22) return this.fail("expected a member name");
      const key = this.string();
      if (key == null) return null;
      this.space();
      if (this.i >= this.text.length || this.text.charCodeAt(this.i) != 0x3a) return this.fail("expected ':'");
      this.i++;
      const value = this.value(depth + 1);
      if (value == null) return null;
      obj.keys.push(key);
      obj.items.push(value);
      this.space();
      if (this.i >= this.text.length) return this.fail("unterminated object");
      const c = this.text.charCodeAt(this.i++);
      if (c == 0x7d) return obj;
      if (c != 0x2c) return this.fail("expected ',' or '}'");
    }
  }
}
