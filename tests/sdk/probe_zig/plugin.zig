//! Every capability of the Zig SDK once, through the real host (tests/sdk/test_zig.py).
const std = @import("std");
const omni = @import("omnicore");

comptime {
    omni.handler("tour", tour, .{});
    omni.handler("echo", echo, .{});
}

fn echo(_: *omni.Call, input: []const u8) ![]const u8 {
    return input;
}

fn result(a: std.mem.Allocator, value: anytype) []const u8 {
    if (value) |v| return switch (@TypeOf(v)) {
        []u8, []const u8 => std.fmt.allocPrint(a, "ok({s})", .{v}) catch "oom",
        else => std.fmt.allocPrint(a, "ok({any})", .{v}) catch "oom",
    } else |err| return @errorName(err);
}

/// Input: the upstream's URL. Output: one `name=result` line per host call.
const big: [2000]u8 = @splat('x');

fn tour(call: *omni.Call, url: []const u8) ![]const u8 {
    const a = call.arena;
    var out: std.ArrayList(u8) = .empty;
    const Line = struct {
        fn add(list: *std.ArrayList(u8), alloc: std.mem.Allocator, name: []const u8, text: []const u8) !void {
            try list.appendSlice(alloc, name);
            try list.append(alloc, '=');
            try list.appendSlice(alloc, text);
            try list.append(alloc, '\n');
        }
    };
    try Line.add(&out, a, "kv.set", result(a, omni.kv.set("k1", "v1")));
    try Line.add(&out, a, "kv.get", if (try omni.kv.get(a, "k1")) |v| v else "null");
    try Line.add(&out, a, "kv.missing", if (try omni.kv.get(a, "nope")) |v| v else "null");
    try Line.add(&out, a, "kv.big", result(a, omni.kv.set("big", &big)));
    try Line.add(&out, a, "kv.incr", result(a, omni.kv.incr("n", 5)));
    const keys = try omni.kv.list(a, "k");
    try Line.add(&out, a, "kv.list", try std.mem.join(a, ",", keys));
    try Line.add(&out, a, "kv.delete", result(a, omni.kv.delete("k1")));
    try Line.add(&out, a, "config.db", if (try omni.config.get(a, "db.port")) |v| v else "null");
    try Line.add(&out, a, "secret", if (try omni.secrets.get(a, "token")) |v| v else "null");
    try Line.add(&out, a, "secret.unset", result(a, omni.secrets.get(a, "unset")));
    try Line.add(&out, a, "secret.hidden", result(a, omni.secrets.get(a, "hidden")));
    try Line.add(&out, a, "events", result(a, omni.events.publish("order.created", "{}")));
    try Line.add(&out, a, "events.denied", result(a, omni.events.publish("other", "{}")));
    const id = try omni.tasks.enqueue("echo", "later", 60_000);
    try Line.add(&out, a, "tasks.cancel", result(a, omni.tasks.cancel(id)));
    const req = try std.fmt.allocPrint(a, "{{\"method\":\"POST\",\"url\":\"{s}/items\"}}", .{url});
    const response = try omni.http.request(a, req, "payload");
    try Line.add(&out, a, "http", try std.fmt.allocPrint(a, "{d} {s}", .{ response.status, response.body }));
    try Line.add(&out, a, "http.denied", result(a, omni.http.request(a, "{\"method\":\"GET\",\"url\":\"https://denied.example/\"}", "")));
    const mem = try omni.memory.remember(.long_term, "{\"text\":\"likes green tea\"}");
    try Line.add(&out, a, "memory.recall", result(a, omni.memory.recall(a, "{\"query\":\"green tea\"}")));
    try Line.add(&out, a, "memory.forget", result(a, omni.memory.forget(mem)));
    try Line.add(&out, a, "vectors.upsert", result(a, omni.vectors.upsert("c", "a", &.{ 1, 0 }, "{\"t\":1}")));
    try Line.add(&out, a, "vectors.search", result(a, omni.vectors.search(a, "c", &.{ 1, 0 }, 1)));
    try Line.add(&out, a, "vectors.missing", result(a, omni.vectors.search(a, "zz", &.{ 1, 0 }, 1)));
    try Line.add(&out, a, "vectors.delete", result(a, omni.vectors.delete("c", "a")));
    return out.items;
}
