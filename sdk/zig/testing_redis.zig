//! The test host's in-memory Redis (testing_host.zig): specs/abi.md §4.11's commands on
//! `Host.redis`, keys under `Host.redis_prefix`, refusing what the host refuses.
const std = @import("std");
const th = @import("testing_host.zig");

const V = std.json.Value;
/// The host's commands and argument counts (generated from sdk/contract/host.json).
const commands = @import("contract.zig").redis_commands;
const wrongtype = "INVALID: WRONGTYPE Operation against a key holding the wrong kind of value";

const Refused = error{ Refused, OutOfMemory };

/// Runs `{"cmd", "args"}`; the §3.3 answer (the reply as JSON, or the refusal).
pub fn command(h: *th.Host, request: []const u8) i64 {
    const a = h.a;
    const Req = struct { cmd: []const u8, args: []const V = &.{} };
    const req = std.json.parseFromSliceLeaky(Req, a, request, .{ .ignore_unknown_fields = true }) catch return th.failed("INVALID: the request is not JSON", .{});
    const cmd = std.ascii.allocUpperString(a, req.cmd) catch return -5;
    const spec = for (commands) |c| {
        if (std.mem.eql(u8, c.name, cmd)) break c;
    } else return th.failed("DENIED: redis command '{s}' is not allowed", .{cmd});
    const given = req.args.len;
    if (spec.most) |most| {
        if (given < spec.least or given > most) return th.failed("INVALID: {s} takes {d} to {d} arguments, got {d}", .{ cmd, spec.least, most, given });
    } else if (given < spec.least) return th.failed("INVALID: {s} takes {d} or more arguments, got {d}", .{ cmd, spec.least, given });
    var args: std.ArrayList([]const u8) = .empty;
    for (req.args) |arg| {
        const text = switch (arg) {
            .string => |s| s,
            .integer => |n| std.fmt.allocPrint(a, "{d}", .{n}) catch return -5,
            .object => |o| blk: {
                const b64 = (o.get("$bytes") orelse return th.failed("INVALID: an argument must be a string, an integer or bytes", .{})).string;
                const out = a.alloc(u8, std.base64.standard.Decoder.calcSizeForSlice(b64) catch return th.failed("INVALID: bad base64", .{})) catch return -5;
                std.base64.standard.Decoder.decode(out, b64) catch return th.failed("INVALID: bad base64", .{});
                break :blk out;
            },
            else => return th.failed("INVALID: an argument must be a string, an integer or bytes", .{}),
        };
        args.append(a, text) catch return -5;
    }
    var message: []const u8 = "";
    const reply = run(h, cmd, args.items, &message) catch |err| switch (err) {
        error.Refused => return th.failed("{s}", .{message}),
        error.OutOfMemory => return -5,
    };
    return th.answered(std.json.Stringify.valueAlloc(a, reply, .{}) catch return -5);
}

fn int(text: []const u8, message: *[]const u8) Refused!i64 {
    return std.fmt.parseInt(i64, text, 10) catch {
        message.* = "INVALID: value is not an integer or out of range";
        return error.Refused;
    };
}

fn str(a: std.mem.Allocator, s: []const u8) !V {
    return .{ .string = try a.dupe(u8, s) };
}

fn need(args: []const []const u8, n: usize, message: *[]const u8) Refused!void {
    if (args.len < n) {
        message.* = "INVALID: wrong number of arguments";
        return error.Refused;
    }
}

fn eq(x: []const u8, y: []const u8) bool {
    return std.mem.eql(u8, x, y);
}

fn run(h: *th.Host, cmd: []const u8, args: []const []const u8, message: *[]const u8) Refused!V {
    const a = h.a;
    const key = try std.mem.concat(a, u8, &.{ h.redis_prefix, args[0] });
    const existing = h.redis.getPtr(key);
    const kind: ?std.meta.Tag(th.RedisValue) = if (existing) |e| std.meta.activeTag(e.*) else null;
    const want: std.meta.Tag(th.RedisValue) = switch (cmd[0]) {
        'H' => .hash,
        'L' => .list,
        'R' => if (eq(cmd, "RPUSH") or eq(cmd, "RPOP")) .list else .string,
        'S' => if (eq(cmd, "SET") or eq(cmd, "SETNX")) .string else .set,
        else => .string,
    };
    const typed = !(eq(cmd, "DEL") or eq(cmd, "EXISTS") or eq(cmd, "MGET") or eq(cmd, "EXPIRE") or eq(cmd, "PEXPIRE") or eq(cmd, "TTL") or eq(cmd, "PTTL") or eq(cmd, "PERSIST") or eq(cmd, "PUBLISH") or eq(cmd, "SET"));
    if (typed and kind != null and kind.? != want) {
        message.* = wrongtype;
        return error.Refused;
    }
    if (eq(cmd, "GET") or eq(cmd, "GETDEL")) {
        const value: V = if (existing) |e| try str(a, e.string) else .null;
        if (eq(cmd, "GETDEL")) drop(h, key);
        return value;
    }
    if (eq(cmd, "SET") or eq(cmd, "SETNX")) {
        try need(args, 2, message);
        var nx = eq(cmd, "SETNX");
        var xx = false;
        var keep = false;
        var ex: ?i64 = null;
        var i: usize = 2;
        while (i < args.len) : (i += 1) {
            const option = try std.ascii.allocUpperString(a, args[i]);
            if (eq(option, "EX") or eq(option, "PX")) {
                i += 1;
                try need(args, i + 1, message);
                const n = try int(args[i], message);
                ex = if (eq(option, "EX")) n else @divFloor(n + 999, 1000);
            } else if (eq(option, "NX")) nx = true else if (eq(option, "XX")) xx = true else if (eq(option, "KEEPTTL")) keep = true else {
                message.* = "INVALID: syntax error";
                return error.Refused;
            }
        }
        if ((nx and existing != null) or (xx and existing == null)) return if (eq(cmd, "SETNX")) .{ .integer = 0 } else .null;
        if (existing) |e| th.freeRedis(a, e);
        try h.redis.put(a, key, .{ .string = try a.dupe(u8, args[1]) });
        if (ex) |seconds| try h.redis_ttl.put(a, key, seconds) else if (!keep) _ = h.redis_ttl.remove(key);
        return if (eq(cmd, "SETNX")) .{ .integer = 1 } else try str(a, "OK");
    }
    if (eq(cmd, "MGET")) {
        var out = std.json.Array.init(a);
        for (args) |k| {
            const v = h.redis.get(try std.mem.concat(a, u8, &.{ h.redis_prefix, k }));
            try out.append(if (v != null and v.? == .string) try str(a, v.?.string) else .null);
        }
        return .{ .array = out };
    }
    if (eq(cmd, "DEL") or eq(cmd, "EXISTS")) {
        var n: i64 = 0;
        for (args) |k| {
            const full = try std.mem.concat(a, u8, &.{ h.redis_prefix, k });
            if (h.redis.contains(full)) {
                n += 1;
                if (eq(cmd, "DEL")) drop(h, full);
            }
        }
        return .{ .integer = n };
    }
    if (eq(cmd, "INCR") or eq(cmd, "DECR") or eq(cmd, "INCRBY") or eq(cmd, "DECRBY")) {
        var by: i64 = if (eq(cmd, "DECR")) -1 else 1;
        if (eq(cmd, "INCRBY") or eq(cmd, "DECRBY")) {
            try need(args, 2, message);
            by = try int(args[1], message) * (if (eq(cmd, "DECRBY")) @as(i64, -1) else 1);
        }
        const value = (if (existing) |e| try int(e.string, message) else 0) + by;
        try h.redis.put(a, key, .{ .string = try std.fmt.allocPrint(a, "{d}", .{value}) });
        return .{ .integer = value };
    }
    if (eq(cmd, "EXPIRE") or eq(cmd, "PEXPIRE")) {
        try need(args, 2, message);
        const n = try int(args[1], message);
        const seconds = if (eq(cmd, "EXPIRE")) n else @divFloor(n + 999, 1000);
        if (existing == null) return .{ .integer = 0 };
        if (seconds <= 0) drop(h, key) else try h.redis_ttl.put(a, key, seconds);
        return .{ .integer = 1 };
    }
    if (eq(cmd, "TTL") or eq(cmd, "PTTL")) {
        if (existing == null) return .{ .integer = -2 };
        const seconds = h.redis_ttl.get(key) orelse return .{ .integer = -1 };
        return .{ .integer = if (eq(cmd, "TTL")) seconds else seconds * 1000 };
    }
    if (eq(cmd, "PERSIST")) return .{ .integer = @intFromBool(h.redis_ttl.remove(key)) };
    if (eq(cmd, "PUBLISH")) {
        try need(args, 2, message);
        try h.published.append(a, .{ .topic = try std.mem.concat(a, u8, &.{ "redis:", key }), .payload = try a.dupe(u8, args[1]) });
        return .{ .integer = 0 };
    }
    return switch (want) {
        .hash => hash(h, cmd, key, args, message),
        .list => list(h, cmd, key, args, message),
        else => set(h, cmd, key, args),
    };
}

fn drop(h: *th.Host, key: []const u8) void {
    if (h.redis.getPtr(key)) |v| th.freeRedis(h.a, v);
    _ = h.redis.orderedRemove(key);
    _ = h.redis_ttl.remove(key);
}

/// The value at `key` of kind `tag`, made empty when absent; kept only if not empty after.
fn slot(h: *th.Host, key: []const u8, comptime tag: std.meta.Tag(th.RedisValue)) !*th.RedisValue {
    const entry = try h.redis.getOrPut(h.a, key);
    if (!entry.found_existing) entry.value_ptr.* = @unionInit(th.RedisValue, @tagName(tag), .empty);
    return entry.value_ptr;
}

fn dropIfEmpty(h: *th.Host, key: []const u8, n: usize) void {
    if (n == 0) drop(h, key);
}

fn hash(h: *th.Host, cmd: []const u8, key: []const u8, args: []const []const u8, message: *[]const u8) Refused!V {
    const a = h.a;
    const m = &(try slot(h, key, .hash)).hash;
    defer dropIfEmpty(h, key, m.count());
    if (eq(cmd, "HGETALL")) {
        var out: std.json.ObjectMap = .empty;
        for (m.keys(), m.values()) |k, v| try out.put(a, k, try str(a, v));
        return .{ .object = out };
    }
    if (eq(cmd, "HLEN")) return .{ .integer = @intCast(m.count()) };
    try need(args, 2, message);
    if (eq(cmd, "HGET")) return if (m.get(args[1])) |v| try str(a, v) else .null;
    if (eq(cmd, "HEXISTS")) return .{ .integer = @intFromBool(m.contains(args[1])) };
    if (eq(cmd, "HDEL")) {
        var n: i64 = 0;
        for (args[1..]) |f| n += @intFromBool(m.orderedRemove(f));
        return .{ .integer = n };
    }
    try need(args, 3, message);
    if (eq(cmd, "HSET")) {
        var n: i64 = 0;
        var i: usize = 1;
        while (i + 1 < args.len) : (i += 2) {
            const e = try m.getOrPut(a, try a.dupe(u8, args[i]));
            n += @intFromBool(!e.found_existing);
            e.value_ptr.* = try a.dupe(u8, args[i + 1]);
        }
        return .{ .integer = n };
    }
    const value = (if (m.get(args[1])) |v| try int(v, message) else 0) + try int(args[2], message); // HINCRBY
    try m.put(a, try a.dupe(u8, args[1]), try std.fmt.allocPrint(a, "{d}", .{value}));
    return .{ .integer = value };
}

fn list(h: *th.Host, cmd: []const u8, key: []const u8, args: []const []const u8, message: *[]const u8) Refused!V {
    const a = h.a;
    const l = &(try slot(h, key, .list)).list;
    defer dropIfEmpty(h, key, l.items.len);
    if (eq(cmd, "LPUSH") or eq(cmd, "RPUSH")) {
        for (args[1..]) |v| {
            const item = try a.dupe(u8, v);
            if (eq(cmd, "LPUSH")) try l.insert(a, 0, item) else try l.append(a, item);
        }
        return .{ .integer = @intCast(l.items.len) };
    }
    if (eq(cmd, "LPOP")) return if (l.items.len == 0) .null else try str(a, l.orderedRemove(0));
    if (eq(cmd, "RPOP")) return if (l.pop()) |v| try str(a, v) else .null;
    if (eq(cmd, "LLEN")) return .{ .integer = @intCast(l.items.len) };
    try need(args, 3, message);
    const n: i64 = @intCast(l.items.len);
    var start = try int(args[1], message);
    var stop = try int(args[2], message);
    if (start < 0) start += n;
    if (stop < 0) stop += n;
    start = @max(start, 0);
    stop = @min(stop, n - 1);
    const span = if (start > stop) l.items[0..0] else l.items[@intCast(start)..@intCast(stop + 1)];
    if (eq(cmd, "LRANGE")) {
        var out = std.json.Array.init(a);
        for (span) |v| try out.append(try str(a, v));
        return .{ .array = out };
    }
    const kept = try a.dupe([]const u8, span); // LTRIM
    l.clearRetainingCapacity();
    try l.appendSlice(a, kept);
    return str(a, "OK");
}

fn set(h: *th.Host, cmd: []const u8, key: []const u8, args: []const []const u8) Refused!V {
    const a = h.a;
    const m = &(try slot(h, key, .set)).set;
    defer dropIfEmpty(h, key, m.count());
    if (eq(cmd, "SCARD")) return .{ .integer = @intCast(m.count()) };
    if (eq(cmd, "SMEMBERS")) {
        const members = try a.dupe([]const u8, m.keys());
        std.mem.sort([]const u8, members, {}, struct {
            fn lt(_: void, x: []const u8, y: []const u8) bool {
                return std.mem.order(u8, x, y) == .lt;
            }
        }.lt);
        var out = std.json.Array.init(a);
        for (members) |v| try out.append(try str(a, v));
        return .{ .array = out };
    }
    var n: i64 = 0;
    for (args[1..]) |v| {
        if (eq(cmd, "SISMEMBER")) return .{ .integer = @intFromBool(m.contains(v)) };
        if (eq(cmd, "SADD")) n += @intFromBool(!(try m.getOrPut(a, try a.dupe(u8, v))).found_existing) else n += @intFromBool(m.orderedRemove(v));
    }
    return .{ .integer = n };
}
