//! The test host: under `zig test` (compiled for this machine, not wasm) the SDK's capability
//! calls land here instead of in omnicore. Config, kv, events, secrets and the log live in
//! memory; the other capabilities answer `error.Unavailable`.
//!
//!     test "greets by name" {
//!         var host = omni.testing.Host.init();
//!         defer host.deinit();
//!         try host.setConfig("greeting", "Hi");
//!         try std.testing.expectEqualStrings("{\"message\":\"Hi, Ada!\"}",
//!             try host.call(greet, "{\"name\":\"Ada\"}"));
//!     }
const std = @import("std");
const omni = @import("omnicore.zig");

const P = [*]const u8;
const M = [*]u8;
const Map = std.StringHashMapUnmanaged([]const u8);

pub fn allocator() std.mem.Allocator {
    return std.heap.page_allocator;
}

/// One logged line.
pub const Line = struct { level: omni.log.Level, message: []const u8 };
/// One published event.
pub const Event = struct { topic: []const u8, payload: []const u8 };

var current: ?*Host = null;

fn host() *Host {
    return current orelse @panic("omni.testing: no Host; create one with Host.init() first");
}

/// In-memory capabilities for a handler's unit tests; the newest `init` serves the calls.
pub const Host = struct {
    a: std.mem.Allocator = std.heap.page_allocator,
    config: Map = .empty,
    kv: Map = .empty,
    secrets: Map = .empty,
    lines: std.ArrayList(Line) = .empty,
    published: std.ArrayList(Event) = .empty,
    /// The message of the last call that failed.
    last_error: ?[]const u8 = null,
    /// Lowest level kept (info, as the host's default grant).
    level: omni.log.Level = .info,

    pub fn init() Host {
        return .{};
    }

    pub fn deinit(self: *Host) void {
        self.config.deinit(self.a);
        self.kv.deinit(self.a);
        self.secrets.deinit(self.a);
        self.lines.deinit(self.a);
        self.published.deinit(self.a);
        if (current == self) current = null;
    }

    fn use(self: *Host) void {
        current = self;
    }

    /// Config value `key` as the host answers it: a string verbatim, anything else as JSON.
    pub fn setConfig(self: *Host, key: []const u8, text: []const u8) !void {
        try self.config.put(self.a, try self.a.dupe(u8, key), try self.a.dupe(u8, text));
    }
    pub fn setSecret(self: *Host, name: []const u8, value: []const u8) !void {
        try self.secrets.put(self.a, try self.a.dupe(u8, name), try self.a.dupe(u8, value));
    }

    /// Calls handler `f` with `input`; its output, or `error.GuestError` with `last_error` set.
    pub fn call(self: *Host, comptime f: anytype, input: []const u8) ![]const u8 {
        self.use();
        var c = omni.beginCall();
        const out, const is_error = omni.invoke(f, &c, input);
        if (is_error) {
            self.last_error = out;
            return error.GuestError;
        }
        return out;
    }

    /// Calls handler `f`, expecting it to fail; its error message.
    pub fn callError(self: *Host, comptime f: anytype, input: []const u8) ![]const u8 {
        _ = self.call(f, input) catch |err| if (err == error.GuestError) return self.last_error.? else return err;
        return error.TestExpectedError;
    }

    /// The messages logged so far, oldest first.
    pub fn messages(self: *Host) []const Line {
        return self.lines.items;
    }
};

fn copyOut(value: ?[]const u8, out: M, cap: usize) i32 {
    const v = value orelse return -1;
    if (v.len <= cap) @memcpy(out[0..v.len], v);
    return @intCast(v.len);
}

fn store(map: *Map, key: []const u8, value: []const u8) !void {
    const h = host();
    const entry = try map.getOrPut(h.a, key);
    if (!entry.found_existing) entry.key_ptr.* = try h.a.dupe(u8, key);
    entry.value_ptr.* = try h.a.dupe(u8, value);
}

/// What the SDK calls instead of the wasm imports (same names and shapes as imports.zig).
pub const raw = struct {
    pub fn log_write(level: i32, msg: P, len: usize) void {
        const h = host();
        if (level < @intFromEnum(h.level)) return;
        const clamped: i32 = @max(0, @min(level, 4));
        const text = h.a.dupe(u8, msg[0..len]) catch return;
        h.lines.append(h.a, .{ .level = @enumFromInt(clamped), .message = text }) catch {};
    }
    pub fn log_enabled(level: i32) i32 {
        return @intFromBool(level >= @intFromEnum(host().level));
    }
    pub fn config_get(key: P, len: usize, out: M, cap: usize) i32 {
        return copyOut(host().config.get(key[0..len]), out, cap);
    }
    pub fn kv_get(key: P, len: usize, out: M, cap: usize) i32 {
        return copyOut(host().kv.get(key[0..len]), out, cap);
    }
    pub fn kv_set(key: P, len: usize, value: P, value_len: usize) i32 {
        store(&host().kv, key[0..len], value[0..value_len]) catch return -5;
        return 0;
    }
    pub fn kv_delete(key: P, len: usize) i32 {
        return @intFromBool(host().kv.remove(key[0..len]));
    }
    pub fn kv_incr(key: P, len: usize, delta: i64, out: *i64) i32 {
        const old = host().kv.get(key[0..len]) orelse "0";
        const value = std.fmt.parseInt(i64, old, 10) catch return -3;
        const sum, const overflow = @addWithOverflow(value, delta);
        if (overflow != 0) return -3;
        var text: [24]u8 = undefined;
        store(&host().kv, key[0..len], std.fmt.bufPrint(&text, "{d}", .{sum}) catch unreachable) catch return -5;
        out.* = sum;
        return 0;
    }
    pub fn kv_list(prefix: P, len: usize, out: M, cap: usize) i32 {
        const h = host();
        var keys: std.ArrayList([]const u8) = .empty;
        defer keys.deinit(h.a);
        var it = h.kv.keyIterator();
        while (it.next()) |k| if (std.mem.startsWith(u8, k.*, prefix[0..len])) keys.append(h.a, k.*) catch return -5;
        std.mem.sort([]const u8, keys.items, {}, struct {
            fn lt(_: void, x: []const u8, y: []const u8) bool {
                return std.mem.order(u8, x, y) == .lt;
            }
        }.lt);
        const text = std.json.Stringify.valueAlloc(h.a, keys.items, .{}) catch return -5;
        defer h.a.free(text);
        return copyOut(text, out, cap);
    }
    pub fn events_publish(topic: P, len: usize, payload: P, payload_len: usize) i32 {
        const h = host();
        const t = h.a.dupe(u8, topic[0..len]) catch return -5;
        const p = h.a.dupe(u8, payload[0..payload_len]) catch return -5;
        h.published.append(h.a, .{ .topic = t, .payload = p }) catch return -5;
        return 0;
    }
    pub fn secrets_get(name: P, len: usize, out: M, cap: usize) i32 {
        return copyOut(host().secrets.get(name[0..len]), out, cap);
    }
    pub fn tasks_enqueue(_: P, _: usize, _: P, _: usize, _: i64) i64 {
        return -5;
    }
    pub fn tasks_cancel(_: i64) i32 {
        return -5;
    }
    pub fn http_request(_: P, _: usize, _: P, _: usize) i64 {
        return unavailable();
    }
    pub fn sql_query(_: P, _: usize, _: P, _: usize) i64 {
        return unavailable();
    }
    pub fn sql_execute(_: P, _: usize, _: P, _: usize) i64 {
        return unavailable();
    }
    pub fn sql_begin(_: P, _: usize) i64 {
        return -5;
    }
    pub fn sql_commit(_: i64) i32 {
        return -5;
    }
    pub fn sql_rollback(_: i64) i32 {
        return -5;
    }
    pub fn redis_command(_: P, _: usize, _: P, _: usize) i64 {
        return unavailable();
    }
    pub fn memory_remember(_: i32, _: P, _: usize) i64 {
        return -5;
    }
    pub fn memory_recall(_: P, _: usize, _: M, _: usize) i32 {
        return -5;
    }
    pub fn memory_forget(_: i64) i32 {
        return -5;
    }
    pub fn vectors_upsert(_: P, _: usize, _: P, _: usize, _: [*]const f32, _: i32, _: P, _: usize) i32 {
        return -5;
    }
    pub fn vectors_search(_: P, _: usize, _: [*]const f32, _: i32, _: i32) i64 {
        return unavailable();
    }
    pub fn vectors_query(_: P, _: usize, _: [*]const f32, _: i32, _: i32, _: P, _: usize) i64 {
        return unavailable();
    }
    pub fn vectors_delete(_: P, _: usize, _: P, _: usize) i32 {
        return -5;
    }
};

/// §3.3 functions answer a packed block in wasm; here no block, only the status.
fn unavailable() i64 {
    return -5;
}
