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
    try Line.add(&out, a, "tasks.unknown", result(a, omni.tasks.enqueue("nope", "", 0)));
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

// The same tour against `omnicore test`'s test host (tests/sdk/test_zig.py runs `zig test`).
test "tour: every capability in the test host" {
    var host = omni.testing.Host.init();
    defer host.deinit();
    try host.setConfig("db.port", "5432");
    try host.setSecret("token", "s3cr3t");
    try host.exposeSecret("unset");
    try host.setHttp("https://up.example/items", 201, "echo: payload");
    const out = try host.call(tour, "https://up.example");
    for ([_][]const u8{
        "kv.set=ok(void)",          "kv.get=v1",               "kv.missing=null",        "kv.incr=ok(5)",
        "kv.list=k1",               "kv.delete=ok(true)",      "config.db=5432",         "secret=s3cr3t",
        "secret.hidden=Denied",     "secret.unset=ok(null)",   "events=ok(void)",        "tasks.cancel=ok(true)",
        "http=201 echo: payload",   "http.denied=Unavailable", "memory.forget=ok(true)", "vectors.upsert=ok(void)",
        "vectors.missing=NotFound", "vectors.delete=ok(true)", "tasks.unknown=NotFound",
    }) |line| {
        if (std.mem.indexOf(u8, out, line) == null) {
            std.debug.print("missing {s} in\n{s}\n", .{ line, out });
            return error.TestUnexpectedResult;
        }
    }
    try std.testing.expect(std.mem.indexOf(u8, out, "\"tier\":2,\"text\":\"likes green tea\"") != null);
    try std.testing.expect(std.mem.indexOf(u8, out, "vectors.search=ok([{\"id\":\"a\",\"score\":1") != null);
    const tasks = host.tasks();
    try std.testing.expectEqual(1, tasks.len);
    try std.testing.expectEqualStrings("echo", tasks[0].handler);
    try std.testing.expectEqualStrings("later", tasks[0].payload);
    try std.testing.expectEqual(60_000, tasks[0].delay_ms);
    try std.testing.expect(tasks[0].cancelled);
    try std.testing.expectEqualStrings("order.created", host.published()[0].topic);
    try std.testing.expectEqualStrings("5", host.kvGet("n").?);
}

fn answerSql(a: std.mem.Allocator, call: omni.testing.SqlCall) ![]const u8 {
    if (!call.query) return error.ReadOnly;
    return std.fmt.allocPrint(a, "{{\"columns\":[{{\"name\":\"n\",\"type\":\"\"}}],\"rows\":[[{s}]]}}", .{call.params[1 .. call.params.len - 1]});
}

fn connectors(call: *omni.Call, _: []const u8) ![]const u8 {
    const a = call.arena;
    const tx = try omni.sql.begin("db");
    const rows = try omni.sql.query(a, "db", try call.print("{{\"sql\":\"SELECT $1\",\"params\":[7],\"tx\":{d}}}", .{tx}));
    try omni.sql.commit(tx);
    const refused = omni.sql.execute(a, "db", "{\"sql\":\"DELETE FROM t\"}");
    const set = try omni.redis.command(a, "cache", "{\"cmd\":\"SET\",\"args\":[\"k\",\"v\",\"EX\",60]}");
    const incr = try omni.redis.command(a, "cache", "{\"cmd\":\"INCRBY\",\"args\":[\"n\",4]}");
    _ = try omni.redis.command(a, "cache", "{\"cmd\":\"RPUSH\",\"args\":[\"l\",\"x\",\"y\"]}");
    const range = try omni.redis.command(a, "cache", "{\"cmd\":\"LRANGE\",\"args\":[\"l\",0,-1]}");
    const wrong = omni.redis.command(a, "cache", "{\"cmd\":\"HGET\",\"args\":[\"k\",\"f\"]}");
    const denied = omni.redis.command(a, "cache", "{\"cmd\":\"FLUSHALL\",\"args\":[\"x\"]}");
    const sent = try omni.mcp.progress(1, 2, "half way");
    const asked = omni.mcp.ask(a, "{\"method\":\"roots/list\",\"params\":{}}");
    return call.print("{s} {any} {s} {s} {s} {any} {any} {any} {any}", .{ rows, refused, set, incr, range, wrong, denied, sent, asked });
}

test "connectors and MCP: SQL from setSql, an in-memory Redis, no MCP client" {
    var host = omni.testing.Host.init();
    defer host.deinit();
    host.setSql(answerSql);
    try std.testing.expectEqualStrings(
        "{\"columns\":[{\"name\":\"n\",\"type\":\"\"}],\"rows\":[[7]]} error.Unavailable \"OK\" 4 [\"x\",\"y\"] error.Invalid error.Denied false error.Denied",
        try host.call(connectors, ""),
    );
    const statements = host.sqlCalls(); // BEGIN, SELECT, COMMIT, DELETE: as the host ran them
    try std.testing.expectEqual(4, statements.len);
    try std.testing.expectEqualStrings("[7]", statements[1].params);
    try std.testing.expectEqual(1, statements[1].tx.?);
    try std.testing.expectEqualStrings("COMMIT", statements[2].sql);
    try std.testing.expectEqual(60, host.redisTtl("k"));
    try std.testing.expectEqualStrings("4", (try host.redisGet("n")).?);
}

test "each Host starts empty; the log level drops lines below it" {
    {
        var host = omni.testing.Host.init();
        defer host.deinit();
        host.kvSet("k", "v");
        try std.testing.expectEqualStrings("v", host.kvGet("k").?);
    }
    var host = omni.testing.Host.init();
    defer host.deinit();
    try std.testing.expectEqual(null, host.kvGet("k"));
    host.setLogLevel(.warn);
    omni.log.info("dropped", .{});
    omni.log.warn("kept", .{});
    try std.testing.expectEqual(1, host.messages().len);
    try std.testing.expectEqual(.warn, host.messages()[0].level);
}
