//! Route-helper fixture (tests/sdk/test_route_helpers.py): every SDK's fixture answers the same.
const std = @import("std");
const omni = @import("omnicore");
const route = omni.route;

comptime {
    route.handler("echo", echo, .{});
    route.handler("hello", hello, .{});
    route.handler("info", info, .{});
    route.handler("fail", fail, .{});
}

/// 201, what the request carried in headers, and the request body echoed byte for byte.
fn echo(call: *omni.Call, req: *const route.Request) !route.Response {
    var res = route.status(call, 201);
    try res.header("content-type", "application/octet-stream");
    try res.header("x-method", req.method);
    try res.header("x-path", req.path);
    try res.header("x-query", req.query);
    try res.header("x-first", req.queryParam("x") orelse "-");
    try res.header("x-all", try std.mem.join(call.arena, ",", try req.queryAll(call.arena, "x")));
    try res.header("x-id", req.param("id") orelse "-");
    try res.header("x-agent", req.header("User-Agent") orelse "-");
    try res.header("x-route", req.route);
    try res.header("set-cookie", "a=1");
    try res.header("set-cookie", "b=2");
    res.body = req.body;
    return res;
}

fn hello(call: *omni.Call, req: *const route.Request) !route.Response {
    return route.text(call, 200, try call.print("hello {s}", .{req.param("name") orelse "world"}));
}

fn info(call: *omni.Call, req: *const route.Request) !route.Response {
    const body = try req.json(struct { n: i64 }, call.arena);
    return route.json(call, 202, .{ .id = req.param("id"), .n = body.n });
}

fn fail(call: *omni.Call, _: *const route.Request) !route.Response {
    return call.fail("the database is down", .{});
}
