//! The Zig SDK's host calls through the contract's requests (tests/sdk/test_contract_fakes.py),
//! answered by omnicore's test host (the redis and sql capabilities' own code): `zig test` on
//! this file, with the requests beside it as requests.jsonl; each outcome printed on stderr as
//! `CONTRACT ok <JSON>` or `CONTRACT error <text>`.
const std = @import("std");
const omni = @import("omnicore");

var answer: []const u8 = "";

fn answerSql(a: std.mem.Allocator, _: omni.testing.SqlCall) ![]const u8 {
    return a.dupe(u8, answer);
}

/// A §3.3 answer: the block the host allocated in this program (ptr << 32 | E << 31 | len).
fn report(packed_result: i64) void {
    const p: u64 = @bitCast(packed_result);
    const len: usize = @intCast(p & 0x7FFF_FFFF);
    const ptr: ?[*]u8 = @ptrFromInt(@as(usize, @intCast(p >> 32)));
    const block = if (ptr) |b| b[0..len] else "";
    std.debug.print("CONTRACT {s} {s}\n", .{ if (p & 0x8000_0000 != 0) "error" else "ok", block });
}

test "the contract's requests" {
    const a = std.heap.page_allocator;
    var lines = std.mem.splitScalar(u8, @embedFile("requests.jsonl"), '\n');
    var host = omni.testing.Host.init();
    host.setSql(answerSql);
    while (lines.next()) |line| {
        if (line.len == 0) continue;
        const req = try std.json.parseFromSliceLeaky(std.json.Value, a, line, .{});
        if (req.object.get("reset") != null) {
            host.deinit();
            host = omni.testing.Host.init();
            host.setSql(answerSql);
            continue;
        }
        const conn = "cache";
        if (req.object.get("sql")) |sql| {
            answer = try std.json.Stringify.valueAlloc(a, sql, .{});
            const body = "{\"sql\":\"SELECT\"}";
            omni.testing.answerSql(conn, body, true);
            report(omni.raw.sql_query(conn.ptr, conn.len, body.ptr, body.len));
        } else {
            const body = try std.json.Stringify.valueAlloc(a, req.object.get("redis").?, .{});
            report(omni.raw.redis_command(conn.ptr, conn.len, body.ptr, body.len));
        }
    }
    host.deinit();
}
