//! omnicore plugins in Zig (omnicore ABI v1, specs/abi.md).
//!
//! A plugin is a `wasm32-wasi` reactor; `omnicore build` compiles it with the Zig from PyPI's
//! `ziglang` (the set-up installs it), with this file as the module `omnicore`:
//!
//!     const std = @import("std");
//!     const omni = @import("omnicore");
//!
//!     comptime {
//!         omni.handler("greet", greet, .{ .description = "Greets someone by name." });
//!     }
//!
//!     const In = struct { name: ?[]const u8 = null };
//!     const Out = struct { message: []const u8 };
//!
//!     fn greet(call: *omni.Call, input: In) !Out {
//!         const name = input.name orelse "world";
//!         if (name.len == 0) return call.fail("name must not be empty", .{});
//!         omni.log.info("greeting {s}", .{name});
//!         return .{ .message = try call.print("Hello, {s}!", .{name}) };
//!     }
//!
//! A handler is `fn (*Call, In) !Out` (JSON in and out through `std.json`; the build derives
//! the handler's input and output schemas from `In` and `Out`), `fn (*Call) !Out` (input
//! ignored) or `fn (*Call, []const u8) ![]const u8` (bytes). Every allocation of a call goes
//! to `call.arena`, which is reset when the next call starts: the output stays valid until
//! then, as the ABI requires (§2.3), and a handler never frees anything.
//!
//! An error returned by a handler fails the call with `GuestError`: `call.fail(fmt, args)`
//! gives the message, any other error says its name ("greet failed: OutOfMemory").
//!
//! Host capabilities: `log`, `config`, `kv`, `events`, `secrets`, `tasks`, `http`, `memory`,
//! `vectors`, `sql`, `redis` and `mcp`, one namespace each. A plugin imports a capability only if it
//! calls into it; the operator grants every one but `log`. Failures are the error set
//! `HostError` (`error.NotFound`, `error.Denied`, ...), one per ABI status (§3.1).
//!
//! `omnicore test` compiles the plugin's tests for wasm32-wasi (`zig test`, the build's
//! target) and runs the program on omnicore's test host: the same imports, served by the
//! host's own capability code over in-memory stores; `omni.testing.Host` sets it up and reads
//! it back (HTTP and SQL answer what the test gives it).
const std = @import("std");
const builtin = @import("builtin");

/// Set up and read back the test host in a plugin's tests (`omnicore test`).
pub const testing = @import("testing.zig");

/// HTTP route handlers: a `Request` in, a `Response` out (specs/http-routes.md).
pub const route = @import("route.zig");

/// The allocator behind `omni_alloc`, the per-call arenas and blocks the host hands back.
pub const gpa: std.mem.Allocator = std.heap.wasm_allocator;

/// The host functions as imported (specs/abi.md §4).
pub const raw = @import("imports.zig");

// ---- errors (ABI §3.1) ----------------------------------------------------------------------

/// What a host function can answer instead of a value.
pub const HostError = error{ NotFound, Denied, Invalid, Quota, Unavailable, TooLarge, OutOfMemory };

fn statusError(status: i64) HostError {
    return switch (status) {
        -1 => error.NotFound,
        -2 => error.Denied,
        -3 => error.Invalid,
        -4 => error.Quota,
        -6 => error.TooLarge,
        else => error.Unavailable,
    };
}

// ---- the runtime: allocator exports and the call (ABI §1.1, §2) ----------------------------

const alignment: std.mem.Alignment = .@"8";

fn omniAlloc(len: usize) callconv(.c) ?[*]u8 {
    const block = gpa.alignedAlloc(u8, alignment, @max(len, 1)) catch return null;
    return block.ptr;
}

fn omniFree(ptr: ?[*]u8, len: usize) callconv(.c) void {
    const p = ptr orelse return;
    const block: [*]align(8) u8 = @alignCast(p);
    gpa.free(block[0..@max(len, 1)]);
}

comptime {
    @export(&omniAlloc, .{ .name = "omni_alloc" });
    @export(&omniFree, .{ .name = "omni_free" });
}

var arena_state: std.heap.ArenaAllocator = .init(gpa);

/// One handler call: its arena and, once `fail` was called, its error message.
pub const Call = struct {
    /// Freed when the next call starts; the output lives in it until then.
    arena: std.mem.Allocator,
    message: ?[]const u8 = null,

    /// Fail the call with a formatted message (the host raises `GuestError` with it).
    pub fn fail(self: *Call, comptime fmt: []const u8, args: anytype) error{HandlerFailed} {
        self.message = std.fmt.allocPrint(self.arena, fmt, args) catch "out of memory formatting the error";
        return error.HandlerFailed;
    }

    /// `std.fmt.allocPrint` into the call's arena.
    pub fn print(self: *Call, comptime fmt: []const u8, args: anytype) error{OutOfMemory}![]u8 {
        return std.fmt.allocPrint(self.arena, fmt, args);
    }
};

/// Starts a call: the previous call's output and allocations are freed here.
pub fn beginCall() Call {
    _ = arena_state.reset(.{ .retain_with_limit = 1 << 20 });
    return .{ .arena = arena_state.allocator() };
}

fn pack(ptr: [*]const u8, len: usize, is_error: bool) i64 {
    const p: u64 = @intFromPtr(ptr);
    const e: u64 = if (is_error) 0x8000_0000 else 0;
    return @bitCast((p << 32) | e | @as(u64, @min(len, 0x7FFF_FFFF)));
}

/// What a handler says about itself for the manifest (specs/abi.md §5.1).
pub const Options = struct {
    description: ?[]const u8 = null,
    title: ?[]const u8 = null,
    destructive: bool = false,
};

/// Runs handler `f` on raw input; the result as the handler's output or error text.
pub fn invoke(comptime f: anytype, call: *Call, input: []const u8) struct { []const u8, bool } {
    const Fn = @typeInfo(@TypeOf(f)).@"fn";
    const out = run(f, Fn, call, input) catch |err| {
        if (err == error.HandlerFailed) if (call.message) |m| return .{ m, true };
        if (err == error.InvalidInput) if (call.message) |m| return .{ m, true };
        const text = std.fmt.allocPrint(call.arena, "{s}", .{@errorName(err)}) catch "handler failed";
        return .{ text, true };
    };
    return .{ out, false };
}

fn run(comptime f: anytype, comptime Fn: std.builtin.Type.Fn, call: *Call, input: []const u8) anyerror![]const u8 {
    if (Fn.param_types.len == 1) return encode(call, try f(call));
    const In = Fn.param_types[1].?;
    if (In == []const u8) return try f(call, input);
    const parsed = std.json.parseFromSliceLeaky(In, call.arena, input, .{
        .ignore_unknown_fields = true,
        .allocate = .alloc_always,
    }) catch |err| {
        call.message = mismatch(In, call.arena, input) orelse
            std.fmt.allocPrint(call.arena, "invalid JSON input: {s}", .{@errorName(err)}) catch null;
        return error.InvalidInput;
    };
    return encode(call, try f(call, parsed));
}

/// When `input` is a JSON object whose member does not fit its field of struct `T`, says so
/// ("name must be a string"): the message std.json's error name alone would not give.
fn mismatch(comptime T: type, a: std.mem.Allocator, input: []const u8) ?[]const u8 {
    const info = switch (@typeInfo(T)) {
        .@"struct" => |s| s,
        else => return null,
    };
    const doc = std.json.parseFromSliceLeaky(std.json.Value, a, input, .{}) catch return null;
    if (doc != .object) return "invalid JSON input: expected an object";
    inline for (info.field_names, info.field_types) |name, field_type| {
        if (doc.object.get(name)) |value| {
            if (!fits(field_type, value))
                return std.fmt.allocPrint(a, "{s} must be {s}", .{ name, kind(field_type) }) catch null;
        }
    }
    return null;
}

fn fits(comptime T: type, value: std.json.Value) bool {
    return switch (@typeInfo(T)) {
        .optional => |o| value == .null or fits(o.child, value),
        .bool => value == .bool,
        .int => value == .integer and std.math.cast(T, value.integer) != null,
        .float => value == .float or value == .integer,
        .pointer => |p| if (p.size == .slice and p.child == u8) value == .string else value == .array,
        .@"struct" => value == .object,
        .@"enum" => value == .string,
        else => true,
    };
}

fn kind(comptime T: type) []const u8 {
    return switch (@typeInfo(T)) {
        .optional => |o| kind(o.child),
        .bool => "a boolean",
        .int => std.fmt.comptimePrint("an integer in the {d}-bit range", .{@bitSizeOf(T)}),
        .float => "a number",
        .pointer => |p| if (p.size == .slice and p.child == u8) "a string" else "an array",
        .@"struct" => "an object",
        .@"enum" => "one of its names",
        else => "valid",
    };
}

fn encode(call: *Call, value: anytype) ![]const u8 {
    if (@TypeOf(value) == []const u8 or @TypeOf(value) == []u8) return value;
    return std.json.Stringify.valueAlloc(call.arena, value, .{ .emit_null_optional_fields = false });
}

/// Export `f` as handler `name` (call it in a `comptime` block), with its description export.
pub fn handler(comptime name: []const u8, comptime f: anytype, comptime options: Options) void {
    const Glue = struct {
        fn call(ptr: [*]const u8, len: usize) callconv(.c) i64 {
            var c = beginCall();
            const out, const is_error = invoke(f, &c, ptr[0..len]);
            return pack(out.ptr, out.len, is_error);
        }
        const description = describe(f, options);
        fn describeExport(_: [*]const u8, _: usize) callconv(.c) i64 {
            return pack(description.ptr, description.len, false);
        }
    };
    // A test program exports its handlers too: the host's tasks enqueue only the plugin's own.
    @export(&Glue.call, .{ .name = name });
    @export(&Glue.describeExport, .{ .name = "omni_describe_" ++ name });
}

// ---- schemas from types (the build's describe exports, specs/abi.md §5.1) -------------------

fn describe(comptime f: anytype, comptime options: Options) []const u8 {
    comptime {
        const Fn = @typeInfo(@TypeOf(f)).@"fn";
        var parts: []const u8 = "";
        if (options.description) |d| parts = parts ++ ",\"description\":" ++ quote(d);
        if (options.title) |t| parts = parts ++ ",\"title\":" ++ quote(t);
        if (options.destructive) parts = parts ++ ",\"destructive\":true";
        if (Fn.param_types.len == 2 and Fn.param_types[1].? != []const u8)
            parts = parts ++ ",\"input_schema\":" ++ schema(Fn.param_types[1].?);
        const Out = @typeInfo(Fn.return_type.?).error_union.payload;
        if (Out != []const u8 and Out != []u8 and @typeInfo(Out) == .@"struct")
            parts = parts ++ ",\"output_schema\":" ++ schema(Out);
        return "{" ++ (if (parts.len > 0) parts[1..] else "") ++ "}";
    }
}

fn quote(comptime s: []const u8) []const u8 {
    comptime {
        var out: []const u8 = "\"";
        for (s) |ch| out = out ++ switch (ch) {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            else => &[_]u8{ch},
        };
        return out ++ "\"";
    }
}

/// The JSON Schema of `T` as `std.json` reads and writes it.
pub fn schema(comptime T: type) []const u8 {
    comptime {
        return switch (@typeInfo(T)) {
            .bool => "{\"type\":\"boolean\"}",
            .int, .comptime_int => "{\"type\":\"integer\"}",
            .float, .comptime_float => "{\"type\":\"number\"}",
            .optional => |o| schema(o.child),
            .@"enum" => |e| blk: {
                var names: []const u8 = "";
                for (e.field_names) |field| names = names ++ "," ++ quote(field);
                break :blk "{\"type\":\"string\",\"enum\":[" ++ names[1..] ++ "]}";
            },
            .pointer => |p| if (p.size == .slice and p.child == u8)
                "{\"type\":\"string\"}"
            else if (p.size == .slice)
                "{\"type\":\"array\",\"items\":" ++ schema(p.child) ++ "}"
            else
                schema(p.child),
            .array => |a| if (a.child == u8) "{\"type\":\"string\"}" else "{\"type\":\"array\",\"items\":" ++ schema(a.child) ++ "}",
            .@"struct" => |s| blk: {
                var props: []const u8 = "";
                var required: []const u8 = "";
                for (s.field_names, s.field_types, s.field_attrs) |name, field_type, attrs| {
                    props = props ++ "," ++ quote(name) ++ ":" ++ schema(field_type);
                    if (attrs.default_value_ptr == null and @typeInfo(field_type) != .optional)
                        required = required ++ "," ++ quote(name);
                }
                break :blk "{\"type\":\"object\",\"properties\":{" ++ (if (props.len > 0) props[1..] else "") ++ "}" ++
                    (if (required.len > 0) ",\"required\":[" ++ required[1..] ++ "]" else "") ++ "}";
            },
            else => "{}",
        };
    }
}

// ---- the caller-buffer pattern (§3.2) and host blocks (§3.3) --------------------------------

fn readInto(a: std.mem.Allocator, comptime f: anytype, arg: []const u8) HostError![]u8 {
    var cap: usize = 256;
    for (0..4) |_| {
        const buf = try a.alloc(u8, cap);
        const n = f(arg.ptr, arg.len, buf.ptr, buf.len);
        if (n < 0) {
            a.free(buf);
            return statusError(n);
        }
        const size: usize = @intCast(n);
        if (size <= cap) return buf[0..size];
        a.free(buf);
        cap = size; // it did not fit: nothing was written; ask again with room for all of it
    }
    return error.Unavailable; // the value kept changing size between reads
}

/// A §3.3 block the host allocated with `omni_alloc`: copied into `a` and freed, or the error
/// its message names (E = 1).
fn takeBlock(a: std.mem.Allocator, packed_result: i64) HostError![]u8 {
    const p: u64 = @bitCast(packed_result);
    const len: usize = @intCast(p & 0x7FFF_FFFF);
    const ptr: ?[*]u8 = @ptrFromInt(@as(usize, @intCast(p >> 32)));
    const block = if (ptr) |b| b[0..len] else &[_]u8{};
    defer omniFree(ptr, len);
    if (p & 0x8000_0000 != 0) {
        inline for (.{ .{ "NOT_FOUND:", error.NotFound }, .{ "DENIED:", error.Denied }, .{ "INVALID:", error.Invalid }, .{ "QUOTA:", error.Quota }, .{ "TOO_LARGE:", error.TooLarge } }) |pair| {
            if (std.mem.startsWith(u8, block, pair[0])) return pair[1];
        }
        return error.Unavailable;
    }
    return a.dupe(u8, block);
}

// ---- omnicore:log ------------------------------------------------------------------------------

pub const log = struct {
    pub const Level = enum(i32) { trace = 0, debug = 1, info = 2, warn = 3, err = 4 };

    /// Whether a message at `level` would be kept: skip costly formatting when not.
    pub fn enabled(level: Level) bool {
        return raw.log_enabled(@intFromEnum(level)) == 1;
    }
    pub fn write(level: Level, message: []const u8) void {
        raw.log_write(@intFromEnum(level), message.ptr, message.len);
    }
    pub fn print(level: Level, comptime fmt: []const u8, args: anytype) void {
        if (!enabled(level)) return;
        var small: [256]u8 = undefined;
        if (std.fmt.bufPrint(&small, fmt, args)) |text| return write(level, text) else |_| {}
        const text = std.fmt.allocPrint(gpa, fmt, args) catch return write(level, &small);
        defer gpa.free(text);
        write(level, text);
    }
    pub fn trace(comptime fmt: []const u8, args: anytype) void {
        print(.trace, fmt, args);
    }
    pub fn debug(comptime fmt: []const u8, args: anytype) void {
        print(.debug, fmt, args);
    }
    pub fn info(comptime fmt: []const u8, args: anytype) void {
        print(.info, fmt, args);
    }
    pub fn warn(comptime fmt: []const u8, args: anytype) void {
        print(.warn, fmt, args);
    }
    pub fn err(comptime fmt: []const u8, args: anytype) void {
        print(.err, fmt, args);
    }
};

/// Logs the message at error level, then traps: the host raises `Trap` and its log says why.
pub fn panic(comptime fmt: []const u8, args: anytype) noreturn {
    log.print(.err, "panic: " ++ fmt, args);
    @trap();
}

// ---- omnicore:config ---------------------------------------------------------------------------

pub const config = struct {
    /// The config value at `key` as text (strings verbatim, other values as JSON; dotted keys
    /// walk objects; "" is the whole section), or null when absent.
    pub fn get(a: std.mem.Allocator, key: []const u8) HostError!?[]u8 {
        return readInto(a, raw.config_get, key) catch |e| if (e == error.NotFound) null else e;
    }

    /// The value at `key` parsed as JSON into `T` (a string value as its text), or null.
    pub fn getAs(comptime T: type, a: std.mem.Allocator, key: []const u8) (HostError || error{InvalidConfig})!?T {
        const text = try get(a, key) orelse return null;
        if (T == []const u8) return text;
        return std.json.parseFromSliceLeaky(T, a, text, .{ .ignore_unknown_fields = true }) catch error.InvalidConfig;
    }
};

// ---- omnicore:kv -------------------------------------------------------------------------------

pub const kv = struct {
    /// The value at `key`, or null when absent.
    pub fn get(a: std.mem.Allocator, key: []const u8) HostError!?[]u8 {
        return readInto(a, raw.kv_get, key) catch |e| if (e == error.NotFound) null else e;
    }
    pub fn set(key: []const u8, value: []const u8) HostError!void {
        const status = raw.kv_set(key.ptr, key.len, value.ptr, value.len);
        if (status < 0) return statusError(status);
    }
    /// True when the key existed.
    pub fn delete(key: []const u8) HostError!bool {
        const status = raw.kv_delete(key.ptr, key.len);
        if (status < 0) return statusError(status);
        return status == 1;
    }
    /// Adds `delta` atomically (absent = 0) and returns the new value; `error.Invalid` on
    /// overflow or a value that is not an integer.
    pub fn incr(key: []const u8, delta: i64) HostError!i64 {
        var out: i64 = 0;
        const status = raw.kv_incr(key.ptr, key.len, delta, &out);
        if (status < 0) return statusError(status);
        return out;
    }
    /// The keys starting with `prefix`, sorted (at most 1,000).
    pub fn list(a: std.mem.Allocator, prefix: []const u8) (HostError || error{InvalidReply})![]const []const u8 {
        const text = try readInto(a, raw.kv_list, prefix);
        return std.json.parseFromSliceLeaky([]const []const u8, a, text, .{}) catch error.InvalidReply;
    }
};

// ---- omnicore:events, omnicore:secrets, omnicore:tasks -----------------------------------------

pub const events = struct {
    /// Publishes `payload` on `topic` (the host prefixes `plugin.<name>.`).
    pub fn publish(topic: []const u8, payload: []const u8) HostError!void {
        const status = raw.events_publish(topic.ptr, topic.len, payload.ptr, payload.len);
        if (status < 0) return statusError(status);
    }
};

pub const secrets = struct {
    /// The secret's bytes: `error.Denied` when not exposed to this plugin, null when unset.
    pub fn get(a: std.mem.Allocator, name: []const u8) HostError!?[]u8 {
        return readInto(a, raw.secrets_get, name) catch |e| if (e == error.NotFound) null else e;
    }
};

pub const tasks = struct {
    /// Schedules `handler(payload)` of this plugin after `delay_ms`; the task id.
    pub fn enqueue(handler_name: []const u8, payload: []const u8, delay_ms: i64) HostError!i64 {
        const id = raw.tasks_enqueue(handler_name.ptr, handler_name.len, payload.ptr, payload.len, delay_ms);
        if (id < 0) return statusError(id);
        return id;
    }
    /// True when cancelled, false when already running or finished.
    pub fn cancel(id: i64) HostError!bool {
        const status = raw.tasks_cancel(id);
        if (status < 0) return statusError(status);
        return status == 1;
    }
};

// ---- omnicore:http, omnicore:sql, omnicore:redis (answers through §3.3 blocks) -------------------

pub const http = struct {
    pub const Response = struct {
        status: u16,
        /// `{"status", "headers": {name: value}}` as the host wrote it.
        head: []const u8,
        body: []const u8,
    };

    /// `request_json` is `{"method", "url", "headers"?, "timeout_ms"?}` or, through a
    /// connector, `{"method", "connector", "path", ...}` (specs/abi.md §4.7).
    pub fn request(a: std.mem.Allocator, request_json: []const u8, body: []const u8) (HostError || error{InvalidReply})!Response {
        if (builtin.is_test) testing.answerHttp(request_json);
        const block = try takeBlock(a, raw.http_request(request_json.ptr, request_json.len, body.ptr, body.len));
        // head_len: u32 LE, the head's JSON, then the body to the end of the block
        if (block.len < 4) return error.InvalidReply;
        const n = std.mem.readInt(u32, block[0..4], .little);
        if (n > block.len - 4) return error.InvalidReply;
        const head = block[4..][0..n];
        const Head = struct { status: u16 };
        const parsed = std.json.parseFromSliceLeaky(Head, a, head, .{ .ignore_unknown_fields = true }) catch return error.InvalidReply;
        return .{ .status = parsed.status, .head = head, .body = block[4 + n ..] };
    }
};

pub const sql = struct {
    /// `{"sql", "params"?}` on connector `conn`; `{"columns", "rows"}`.
    pub fn query(a: std.mem.Allocator, conn: []const u8, request_json: []const u8) HostError![]u8 {
        if (builtin.is_test) testing.answerSql(conn, request_json, true);
        return takeBlock(a, raw.sql_query(conn.ptr, conn.len, request_json.ptr, request_json.len));
    }
    /// `{"rows_affected", "last_insert_id"?}`.
    pub fn execute(a: std.mem.Allocator, conn: []const u8, request_json: []const u8) HostError![]u8 {
        if (builtin.is_test) testing.answerSql(conn, request_json, false);
        return takeBlock(a, raw.sql_execute(conn.ptr, conn.len, request_json.ptr, request_json.len));
    }
    pub fn begin(conn: []const u8) HostError!i64 {
        const tx = raw.sql_begin(conn.ptr, conn.len);
        if (tx < 0) return statusError(tx);
        return tx;
    }
    pub fn commit(tx: i64) HostError!void {
        const status = raw.sql_commit(tx);
        if (status < 0) return statusError(status);
    }
    pub fn rollback(tx: i64) HostError!void {
        const status = raw.sql_rollback(tx);
        if (status < 0) return statusError(status);
    }
};

pub const redis = struct {
    /// `{"command": [...]}` on connector `conn`; the reply as JSON.
    pub fn command(a: std.mem.Allocator, conn: []const u8, request_json: []const u8) HostError![]u8 {
        return takeBlock(a, raw.redis_command(conn.ptr, conn.len, request_json.ptr, request_json.len));
    }
};

// ---- omnicore:memory, omnicore:vectors ---------------------------------------------------------

pub const memory = struct {
    pub const Tier = enum(i32) { working = 0, short_term = 1, long_term = 2 };

    /// `item_json` is `{"text", "metadata"?, "ttl_s"?, "importance"?, "vector"?}`; the id.
    pub fn remember(tier: Tier, item_json: []const u8) HostError!i64 {
        const id = raw.memory_remember(@intFromEnum(tier), item_json.ptr, item_json.len);
        if (id < 0) return statusError(id);
        return id;
    }
    /// `query_json` is `{"query", "tiers"?, "limit"?, "filter"?, "vector"?}`; a JSON array.
    pub fn recall(a: std.mem.Allocator, query_json: []const u8) HostError![]u8 {
        return readInto(a, raw.memory_recall, query_json);
    }
    pub fn forget(id: i64) HostError!bool {
        const status = raw.memory_forget(id);
        if (status < 0) return statusError(status);
        return status == 1;
    }
};

pub const vectors = struct {
    /// `meta_json` is a JSON object or "".
    pub fn upsert(collection: []const u8, id: []const u8, vector: []const f32, meta_json: []const u8) HostError!void {
        const status = raw.vectors_upsert(collection.ptr, collection.len, id.ptr, id.len, vector.ptr, @intCast(vector.len), meta_json.ptr, meta_json.len);
        if (status < 0) return statusError(status);
    }
    /// The `k` nearest as JSON `[{"id", "score", "metadata"}]`, best first.
    pub fn search(a: std.mem.Allocator, collection: []const u8, vector: []const f32, k: i32) HostError![]u8 {
        return takeBlock(a, raw.vectors_search(collection.ptr, collection.len, vector.ptr, @intCast(vector.len), k));
    }
    /// `search` keeping vectors whose metadata equals every key of `filter_json`.
    pub fn query(a: std.mem.Allocator, collection: []const u8, vector: []const f32, k: i32, filter_json: []const u8) HostError![]u8 {
        return takeBlock(a, raw.vectors_query(collection.ptr, collection.len, vector.ptr, @intCast(vector.len), k, filter_json.ptr, filter_json.len));
    }
    pub fn delete(collection: []const u8, id: []const u8) HostError!bool {
        const status = raw.vectors_delete(collection.ptr, collection.len, id.ptr, id.len);
        if (status < 0) return statusError(status);
        return status == 1;
    }
};

// ---- omnicore:mcp (the MCP client of a tool call, specs/abi.md §4.13) --------------------------

pub const mcp = struct {
    /// Reports `done` of `total` (`total <= 0`: unknown) with a message (empty: none) to the
    /// client, if it asked for progress: true when sent, false when nobody listens (outside
    /// MCP, or no progress token).
    pub fn progress(done: f64, total: f64, message: []const u8) HostError!bool {
        const status = raw.mcp_progress(done, total, message.ptr, message.len);
        if (status == -1) return false;
        if (status < 0) return statusError(status);
        return true;
    }
    /// Sends `{"method", "params", "key"?}` (MCP's `elicitation/create`,
    /// `sampling/createMessage` or `roots/list`) to the client and waits for its result, at
    /// most until the call's deadline: the result's JSON. `error.Denied`: the grant does not
    /// allow that question; `error.Unavailable`: no MCP client waits on this call, it lacks the
    /// capability, or it did not answer in time (on MCP 2026-07-28: the question goes out with
    /// the call's answer and the handler runs again with it, so ask every question first).
    pub fn ask(a: std.mem.Allocator, request_json: []const u8) HostError![]u8 {
        return takeBlock(a, raw.mcp_ask(request_json.ptr, request_json.len));
    }
};
