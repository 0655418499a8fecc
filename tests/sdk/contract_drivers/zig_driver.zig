//! The Zig SDK's test host (omni.testing) through the contract's requests
//! (tests/sdk/test_contract_fakes.py): `zig test` on this file, with the requests beside it as
//! requests.jsonl; each outcome printed on stderr as `CONTRACT ok <JSON>` or
//! `CONTRACT error <text>`.
const std = @import("std");
const omni = @import("omnicore");

var answer: []const u8 = "";

fn answerSql(a: std.mem.Allocator, _: omni.testing.SqlCall) ![]const u8 {
    return a.dupe(u8, answer);
}

fn report(status: i64) void {
    if (status != 0) {
        std.debug.print("CONTRACT error status {d}\n", .{status});
        return;
    }
    const block, const failed = omni.testing.takeBlock();
    std.debug.print("CONTRACT {s} {s}\n", .{ if (failed) "error" else "ok", block });
}

test "the contract's requests" {
    const a = std.heap.page_allocator;
    var lines = std.mem.splitScalar(u8, @embedFile("requests.jsonl"), '\n');
    var current: ?*omni.testing.Host = null;
    while (lines.next()) |line| {
        if (line.len == 0) continue;
        const req = try std.json.parseFromSliceLeaky(std.json.Value, a, line, .{});
        if (req.object.get("reset") != null) {
            if (current) |h| h.deinit();
            const h = try a.create(omni.testing.Host);
            h.* = omni.testing.Host.init();
            // The host serves calls once a handler runs; a bare raw call needs it current.
            _ = h.call(struct {
                fn noop(_: *omni.Call, _: []const u8) ![]const u8 {
                    return "";
                }
            }.noop, "") catch {};
            h.setSql(answerSql);
            current = h;
            continue;
        }
        const conn = "cache";
        if (req.object.get("sql")) |sql| {
            answer = try std.json.Stringify.valueAlloc(a, sql, .{});
            const body = "{\"sql\":\"SELECT\"}";
            report(omni.testing.raw.sql_query(conn.ptr, conn.len, body.ptr, body.len));
        } else {
            const body = try std.json.Stringify.valueAlloc(a, req.object.get("redis").?, .{});
            report(omni.testing.raw.redis_command(conn.ptr, conn.len, body.ptr, body.len));
        }
    }
}
