//! The counter example: `count` adds `by` (default 1) to a counter that starts at config
//! `start`; `reset` puts it back. The count lives in omnicore:kv (key "count", the distance
//! from `start`), so it survives a restart and every instance in the pool shares it:
//! `kv.incr` is atomic in the host.
const std = @import("std");
const omni = @import("omnicore");

comptime {
    omni.handler("count", count, .{
        .title = "Count",
        .description = "Adds `by` (default 1, may be negative) to the durable counter and returns its new value.",
    });
    omni.handler("reset", reset, .{
        .title = "Reset the counter",
        .description = "Puts the counter back to its configured start value and returns it.",
        .destructive = true,
    });
}

const key = "count";

const CountInput = struct { by: ?i64 = null };
const Count = struct { count: i64 };

/// Config `start` (default 0).
fn start(call: *omni.Call) !i64 {
    return omni.config.getAs(i64, call.arena, "start") catch |err| switch (err) {
        error.InvalidConfig => return call.fail("config 'start' must be an integer", .{}),
        else => return call.fail("config 'start' could not be read: {s}", .{@errorName(err)}),
    } orelse 0;
}

fn count(call: *omni.Call, input: CountInput) !Count {
    const by = input.by orelse 1;
    const from = try start(call);
    const moved = omni.kv.incr(key, by) catch |err| switch (err) {
        error.Invalid => return call.fail("counter overflow: the result does not fit in 64 bits", .{}),
        else => return call.fail("kv.incr failed: {s}", .{@errorName(err)}),
    };
    const next, const overflow = @addWithOverflow(from, moved);
    if (overflow != 0) {
        // Take the step back so the stored count stays where it was (-minInt in two steps).
        if (by == std.math.minInt(i64)) {
            _ = omni.kv.incr(key, std.math.maxInt(i64)) catch {};
            _ = omni.kv.incr(key, 1) catch {};
        } else _ = omni.kv.incr(key, -by) catch {};
        return call.fail("counter overflow: the result does not fit in 64 bits", .{});
    }
    omni.log.debug("count += {d} -> {d}", .{ by, next });
    return .{ .count = next };
}

/// Takes any input (it is ignored), so `reset` can be called with an empty body.
fn reset(call: *omni.Call) !Count {
    const from = try start(call);
    _ = omni.kv.delete(key) catch |err| return call.fail("kv.delete failed: {s}", .{@errorName(err)});
    omni.log.info("counter reset to {d}", .{from});
    return .{ .count = from };
}

test "counts from the configured start and resets" {
    var host = omni.testing.Host.init();
    defer host.deinit();
    try host.setConfig("start", "40");
    try std.testing.expectEqualStrings("{\"count\":41}", try host.call(count, "{}"));
    try std.testing.expectEqualStrings("{\"count\":46}", try host.call(count, "{\"by\": 5}"));
    try std.testing.expectEqualStrings("6", host.kvGet(key).?); // the distance from start
    try std.testing.expectEqualStrings("{\"count\":40}", try host.call(reset, ""));
    try std.testing.expectEqualStrings("counter overflow: the result does not fit in 64 bits", try host.callError(count, "{\"by\": 9223372036854775807}"));
    try std.testing.expectEqualStrings("{\"count\":41}", try host.call(count, "{}"));
}
