// Types of the "omnicore" module that JS/TS plugins import (runtime: sdk/js/runtime/api.js).
// Host functions and their semantics: specs/abi.md §4.
//
// A handler is an exported function. It receives the input as a string (UTF-8 decoded; the
// raw bytes are `bytes()`) and returns a string (sent as UTF-8), a Uint8Array/ArrayBuffer
// (sent as is), undefined/null (empty output) or any other JSON value (sent as JSON). A
// thrown error becomes the call's error (GuestError on the host) with message and stack. An
// async handler is run to completion inside the call (there is no event loop for timers/I/O).

declare module "omnicore" {
  /** A handler: `export function greet(input: string): Output`. */
  export type Output = string | Uint8Array | ArrayBuffer | null | undefined | JsonValue;
  export type Handler = (input: string) => Output | Promise<Output>;
  export type JsonValue = string | number | boolean | null | JsonValue[] | { [k: string]: JsonValue };
  export type Bytes = string | Uint8Array | ArrayBuffer;

  /**
   * The input of a handler that takes JSON of type T: a string at run time, as every input.
   * `export function add(input: Json<AddIn>): AddOut` tells `omnicore build` the handler's
   * input schema (AddIn's) and output schema (AddOut's) for AI agents; its JSDoc comment is
   * its description, `@title` and `@destructive` tags say the rest.
   */
  export type Json<T> = string & { readonly __json?: T };

  /** A host function answered with a negative status (specs/abi.md §3.1). */
  export class OmniHostError extends Error {
    readonly status: number;
    /** "NOT_FOUND" | "DENIED" | "INVALID" | "QUOTA" | "UNAVAILABLE" | "TOO_LARGE" */
    readonly code: string;
  }

  /** Throw this for bad input; its message reaches the caller. */
  export class InputError extends Error {
    constructor(message: string);
  }

  /** The raw bytes of the current call's input. */
  export function bytes(): Uint8Array;

  /** JSON.parse that throws InputError("invalid JSON input: ...") on malformed input. */
  export function json<T>(input: Json<T>): T;
  export function json<T = unknown>(input: string | Uint8Array): T;

  /** The capabilities linked into this plugin at build time. */
  export function linked(): string[];

  export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | 0 | 1 | 2 | 3 | 4;

  /** omnicore:log — the plugin's log (always available). `console.*` writes here too. */
  export const log: {
    write(level: LogLevel, ...args: unknown[]): void;
    enabled(level: LogLevel): boolean;
    trace(...args: unknown[]): void;
    debug(...args: unknown[]): void;
    info(...args: unknown[]): void;
    warn(...args: unknown[]): void;
    error(...args: unknown[]): void;
  };

  /** omnicore:config — the plugin's own config section (read-only). */
  export const config: {
    /** The value as text (strings verbatim, other values as compact JSON), or `fallback`. */
    get(key: string): string | undefined;
    get<T>(key: string, fallback: T): string | T;
    /** The value with its JSON type (dotted keys walk objects), or `fallback`. */
    value<T = JsonValue>(key: string, fallback?: T): T;
    /** The whole section. */
    all(): Record<string, JsonValue>;
  };

  /** omnicore:kv — a durable key-value store per plugin. */
  export const kv: {
    get(key: string): Uint8Array | null;
    getText(key: string): string | null;
    getJSON<T = JsonValue>(key: string): T | null;
    /** Strings are stored as UTF-8, bytes as is, anything else as JSON. */
    set(key: string, value: Bytes | JsonValue): void;
    /** True when the key existed. */
    delete(key: string): boolean;
    /** Atomically add `delta` (default 1); returns the new value. A number past 2^53 throws
     *  RangeError (the add is done): counters that large take a bigint delta. */
    incr(key: string, delta?: number): number;
    /** Atomically add a bigint `delta`; returns the new value exactly, as a bigint. */
    incr(key: string, delta: bigint): bigint;
    /** Keys with this prefix, sorted (at most 1,000). */
    list(prefix?: string): string[];
  };

  export const Tier: { readonly WORKING: 0; readonly SHORT: 1; readonly LONG: 2 };

  export interface Memory {
    id: number;
    tier: number;
    text: string;
    metadata: Record<string, JsonValue>;
    score: number;
    created_at: string | number;
  }

  /** A metadata equality filter: every key must equal (strings, numbers, booleans). */
  export type MetadataFilter = Record<string, string | number | boolean>;

  /** omnicore:memory — tiered text memories for agents. */
  export const memory: {
    /** The new memory's id. importance 0..1 (default 0.5) ranks it and decides eviction;
     *  vector is an embedding of the text (every vector of a plugin has one dimension). */
    remember(tier: 0 | 1 | 2, text: string,
             options?: { metadata?: Record<string, JsonValue>; ttl_s?: number;
                         importance?: number; vector?: Float32Array | number[] }): number;
    /** Best first; filter keeps memories whose metadata matches, vector ranks by cosine too. */
    recall(query: string, options?: { tiers?: number[]; limit?: number;
                                      filter?: MetadataFilter;
                                      vector?: Float32Array | number[] }): Memory[];
    forget(id: number): boolean;
  };

  /** omnicore:vectors — named f32 vector collections (cosine). */
  export const vectors: {
    upsert(collection: string, id: string, vector: Float32Array | number[],
           metadata?: Record<string, JsonValue>): void;
    search(collection: string, vector: Float32Array | number[], k?: number):
      { id: string; score: number; metadata: Record<string, JsonValue> }[];
    /** search() keeping only vectors whose metadata matches `filter` (before the k best). */
    query(collection: string, vector: Float32Array | number[], k?: number,
          filter?: MetadataFilter):
      { id: string; score: number; metadata: Record<string, JsonValue> }[];
    /** True when deleted; throws NOT_FOUND for an unknown collection. */
    delete(collection: string, id: string): boolean;
  };

  /** omnicore:tasks — durable background calls of this plugin's own handlers. */
  export const tasks: {
    enqueue(handler: string, payload?: Bytes | JsonValue, options?: { delayMs?: number }): number;
    cancel(id: number): boolean;
  };

  export interface HttpRequest {
    method: string;
    url?: string;
    /** A named connector: the host adds base URL and credentials. */
    connector?: string;
    path?: string;
    headers?: Record<string, string>;
    timeout_ms?: number;
  }

  export class HttpResponse {
    readonly status: number;
    readonly headers: Record<string, string>;
    readonly body: Uint8Array;
    readonly ok: boolean;
    text(): string;
    json<T = JsonValue>(): T;
  }

  /** omnicore:http — outbound HTTP to hosts in the grant, and connectors. */
  export const http: {
    /** Throws Error("DENIED: ...") when the host is not in the grant. */
    request(req: HttpRequest, body?: Bytes): HttpResponse;
    get(url: string, headers?: Record<string, string>): HttpResponse;
    post(url: string, body: Bytes | JsonValue, headers?: Record<string, string>): HttpResponse;
    connector(name: string, method: string, path: string, body?: Bytes | JsonValue,
              headers?: Record<string, string>): HttpResponse;
  };

  /** An HTTP request served on a route the operator mapped (specs/http-routes.md §2). */
  export class RouteRequest {
    /** Upper case, as sent. */
    readonly method: string;
    /** After the routes' prefix, percent-decoded, starting with "/". */
    readonly path: string;
    /** The raw query string without "?" ("" when none). */
    readonly query: string;
    /** The query parsed: name -> every value, in order. */
    readonly queryParams: Record<string, string[]>;
    /** The route pattern's variables (`/notes/{id}` -> `{id: "7"}`). */
    readonly params: Record<string, string>;
    /** Lower-case name -> value (repeated headers joined with ", "). */
    readonly headers: Record<string, string>;
    readonly body: Uint8Array;
    /** The route's name, the full URL asked for, the client's address. */
    readonly route: string;
    readonly url: string;
    readonly remote: string;
    /** What the host checked: `{mode: "public" | "token" | "github" | "stripe", ...}`. */
    readonly auth: { mode: string; [k: string]: JsonValue };
    /** A header's value (the name in any case), or null. */
    header(name: string): string | null;
    /** The first value of a query parameter, or null. */
    queryParam(name: string): string | null;
    /** Every value of a query parameter ([] when absent). */
    queryAll(name: string): string[];
    /** The body as UTF-8 text. */
    text(): string;
    /** The body parsed; throws InputError("invalid JSON body: ...") when it is not JSON. */
    json<T = JsonValue>(): T;
  }

  /** A route handler's answer (specs/http-routes.md §3). */
  export class RouteResponse {
    constructor(status?: number, headers?: Record<string, string | string[]>, body?: Bytes);
    status: number;
    headers: Record<string, string | string[]>;
    body: Uint8Array;
    /** `text/plain; charset=utf-8`. */
    static text(text: string, status?: number): RouteResponse;
    /** `application/json`. */
    static json(value: unknown, status?: number): RouteResponse;
    /** An empty body. */
    static status(status: number): RouteResponse;
    /** Sets a header (a list sends it once per value); returns the response. */
    header(name: string, value: string | string[]): RouteResponse;
  }

  /** What a route function may return: a RouteResponse or its plain shape. */
  export type RouteAnswer = RouteResponse | { status?: number; headers?: Record<string, string | string[]>;
    body?: Bytes };

  /**
   * A handler answering HTTP: `export const hook = route((req) => RouteResponse.text("hi"))`.
   * A malformed envelope is answered 400 and an error `fn` throws 500 (logged), never a trap.
   */
  export function route(fn: (req: RouteRequest) => RouteAnswer | Promise<RouteAnswer>): RouteHandler;

  /** The handler `route` makes: it answers the response block (bytes). */
  export type RouteHandler = (input: string) => Uint8Array | Promise<Uint8Array>;

  /** omnicore:events — publish on `plugin.<name>.<topic>`. */
  export const events: {
    publish(topic: string, payload?: Bytes | JsonValue): void;
  };

  /** omnicore:secrets — secrets the operator exposed to this plugin. */
  export const secrets: {
    get(name: string): Uint8Array | null;
    getText(name: string): string | null;
  };

  /** A typed SQL parameter for what plain JS values do not say (build it with sql.bytes() ...). */
  export class SqlValue {
    readonly tag: "$bytes" | "$json" | "$timestamp" | "$date" | "$time" | "$decimal";
    readonly value: JsonValue;
  }

  /** A SQL parameter: null/undefined (NULL), boolean, number (integer or double), string,
   *  bigint (sent as a decimal), Uint8Array/ArrayBuffer (bytes), Date (timestamp), or SqlValue.
   *  A plain object or array is refused: wrap it in sql.json(). */
  export type SqlParam = null | undefined | boolean | number | bigint | string | Uint8Array |
    ArrayBuffer | Date | SqlValue;
  /** A cell: bytes come back as Uint8Array, JSON documents parsed, timestamps, dates, times
   *  and decimals as their text ("12.50": no digit lost). Integers past 2^53 lose precision. */
  export type SqlCell = null | boolean | number | string | Uint8Array | JsonValue;

  export interface SqlRows<Row = Record<string, SqlCell>> {
    /** The columns: name and the database's type name (`int4`, `text`, `numeric`, ...). */
    columns: { name: string; type: string }[];
    /** One object per row, by column name. */
    rows: Row[];
    /** The same rows as arrays, in column order. */
    values: SqlCell[][];
  }

  export interface SqlExecuted {
    rows_affected: number;
    /** The generated id (MySQL/MariaDB AUTO_INCREMENT), when there is one. */
    last_insert_id?: number;
  }

  /** The statement runs against the connector; its text must be a constant of the plugin
   *  (PostgreSQL `$1, $2`, MySQL `?`): every value goes in `params`, never in the text.
   *  As a tag, db.query`select qty from stock where sku = ${sku}`, each `${value}` is a
   *  parameter and the text the literal parts with `$1, $2, ...` (or `?`, see sql.connect).
   *  `omnicore build` and `omnicore test` refuse a plain-string statement that is not a
   *  literal or a top-level `const` bound to one (specs/abi.md §4.10.1). */
  export interface SqlRunner {
    query<Row = Record<string, SqlCell>>(statement: TemplateStringsArray,
      ...values: SqlParam[]): SqlRows<Row>;
    query<Row = Record<string, SqlCell>>(statement: string, params?: SqlParam[]): SqlRows<Row>;
    execute(statement: TemplateStringsArray, ...values: SqlParam[]): SqlExecuted;
    execute(statement: string, params?: SqlParam[]): SqlExecuted;
  }

  export interface SqlTransaction extends SqlRunner {
    readonly id: number;
    /** Throws when the commit failed (nothing was committed). */
    commit(): void;
    /** Does nothing after commit() or rollback(). */
    rollback(): void;
  }

  export interface SqlConnection extends SqlRunner {
    readonly name: string;
    /** A transaction to commit() or rollback(); the host rolls back one the call left open. */
    begin(): SqlTransaction;
    /** Runs fn in a transaction: committed when fn returns, rolled back when it throws. */
    transaction<T>(fn: (tx: SqlTransaction) => T): T;
  }

  /** omnicore:sql — PostgreSQL and MySQL/MariaDB through connectors the operator granted
   *  (grant `sql: {connectors: [orders]}`). Failures throw OmniHostError (`DENIED`,
   *  `UNAVAILABLE`, `INVALID` with the database's message, `TOO_LARGE`, `QUOTA`). */
  export const sql: {
    /** `placeholders: "?"` for a MySQL/MariaDB connector: a tagged statement's values
     *  become `?` (the default, `"$"`, PostgreSQL's `$1, $2, ...`). */
    connect(name: string, options?: { placeholders?: "$" | "?" }): SqlConnection;
    bytes(value: Uint8Array | ArrayBuffer): SqlValue;
    json(value: JsonValue): SqlValue;
    /** RFC 3339; without an offset it is a timestamp without time zone. */
    timestamp(value: Date | string): SqlValue;
    date(value: string): SqlValue;
    time(value: string): SqlValue;
    decimal(value: string | number | bigint): SqlValue;
  };

  export type RedisArg = string | number | bigint | Uint8Array | ArrayBuffer;
  export type RedisReply = null | number | string | Uint8Array | RedisReply[] |
    { [field: string]: RedisReply };

  export interface RedisConnection {
    readonly name: string;
    /** Any command of specs/abi.md §4.11 (others throw DENIED). */
    command(cmd: string, ...args: RedisArg[]): RedisReply;
    /** null when absent; Uint8Array when the value is not UTF-8. */
    get(key: string): string | Uint8Array | null;
    set(key: string, value: RedisArg, options?: { ex?: number }): void;
    incr(key: string): number;
    incrby(key: string, delta: number): number;
    /** False when the key does not exist. */
    expire(key: string, seconds: number): boolean;
    /** Seconds left: -1 without expiry, -2 for an absent key. */
    ttl(key: string): number;
    del(...keys: string[]): number;
    hget(key: string, field: string): string | Uint8Array | null;
    hset(key: string, field: string, value: RedisArg): number;
    hgetall(key: string): Record<string, string | Uint8Array>;
    lpush(key: string, ...values: RedisArg[]): number;
    rpush(key: string, ...values: RedisArg[]): number;
    lrange(key: string, start: number, stop: number): (string | Uint8Array)[];
    sadd(key: string, ...members: RedisArg[]): number;
    srem(key: string, ...members: RedisArg[]): number;
    smembers(key: string): (string | Uint8Array)[];
    publish(channel: string, message: RedisArg): number;
  }

  /** omnicore:redis — Redis through connectors the operator granted (grant
   *  `redis: {connectors: [cache]}`); every key is under the plugin's prefix. */
  export const redis: {
    connect(name: string): RedisConnection;
  };

  /** omnicore:mcp (grant `mcp`; asking needs `mcp: {ask: [elicitation, sampling]}`): the
   *  MCP client of the tool call running now. Outside MCP nobody listens: `progress` is
   *  false, `ask` throws OmniHostError UNAVAILABLE. */
  export const mcp: {
    /** Progress of `total` (<= 0: unknown) with a message; true when the client was told. */
    progress(progress: number, total?: number, message?: string): boolean;
    /** Send MCP request `method` with `params` to the client and wait for its result, at
     *  most until the call's deadline (DENIED, UNAVAILABLE, INVALID as OmniHostError). */
    ask<T = { [k: string]: JsonValue }>(method: "elicitation/create" | "sampling/createMessage",
                                        params: { [k: string]: JsonValue }): T;
    /** elicitation/create: the user's `{action: "accept" | "decline" | "cancel", content?}`. */
    elicit(message: string, requestedSchema: { [k: string]: JsonValue }):
      { action: "accept" | "decline" | "cancel"; content?: { [k: string]: JsonValue } };
    /** sampling/createMessage with one user message: `{role, content, model, stopReason?}`. */
    sample(prompt: string, maxTokens?: number): { role: string; content: Content; model: string };
  };

  // -- MCP shapes (specs/abi.md §5.2): what a handler answers when it is served as an MCP
  // tool whose manifest object says `content = true`, as a prompt, or as a resource. Types
  // only: the handler returns the object, the host checks it against MCP's schema.

  /** An embedded resource: its text, or its bytes in base64 (`blob`). */
  export interface ResourceContents {
    /** The resource's URI (a resource's handler may leave it out: the URI read). */
    uri?: string;
    mimeType?: string;
    text?: string;
    blob?: string;
  }

  /** One item of a tool result or prompt message; `data` is base64. */
  export type Content =
    | { type: "text"; text: string }
    | { type: "image"; data: string; mimeType: string }
    | { type: "audio"; data: string; mimeType: string }
    | { type: "resource"; resource: ResourceContents & { uri: string } };

  /** A tool result (a handler with `content = true` in `[plugin.handler.NAME]`). */
  export interface ToolResult {
    content: Content[];
    isError?: boolean;
    structuredContent?: { [k: string]: JsonValue };
  }

  /** What a prompt's handler (`[[plugin.prompts]]`, `handler = ...`) answers. */
  export interface PromptResult {
    description?: string;
    messages: { role: "user" | "assistant"; content: Content }[];
  }

  /** What a resource's handler (`[[plugin.resources]]`) is called with: the URI read and
   *  the variables of its `uri_template`. */
  export interface ResourceRead {
    uri: string;
    params: Record<string, string>;
  }

  /** What a resource's handler answers. */
  export interface ResourceResult {
    contents: ResourceContents[];
  }
}
