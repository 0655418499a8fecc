//! HTTP route handlers (specs/http-routes.md §2, §3, §8): `omni.route`.
//!
//! A route handler answers the HTTP requests an operator maps to it. It is an ordinary
//! handler whose input is the host's request envelope and whose output the response block;
//! `route.handler` decodes and encodes them, so the function sees a `Request` and returns a
//! `Response`:
//!
//!     comptime {
//!         omni.route.handler("hello", hello, .{});
//!     }
//!
//!     fn hello(call: *omni.Call, req: *const omni.route.Request) !omni.route.Response {
//!         return omni.route.text(call, 200, try call.print("hello {s}", .{req.param("name") orelse "world"}));
//!     }
//!
//! A malformed envelope is answered 400 (the function is not called) and an error the
//! function returns 500 with a short text body (`call.fail`'s message or the error's name goes
//! to the plugin's log, never to the client): the call itself never fails.
const std = @import("std");
const omni = @import("omnicore.zig");

/// One `name=value` of the query, form-decoded.
const Pair = struct { name: []const u8, value: []const u8 };

/// An HTTP request on a route. Every slice lives in the call's arena.
pub const Request = struct {
    /// Upper case, as sent.
    method: []const u8,
    /// After the routes' prefix, percent-decoded, starting with "/".
    path: []const u8,
    /// The raw query string without "?" ("" when none).
    query: []const u8 = "",
    route: []const u8 = "",
    url: []const u8 = "",
    remote: []const u8 = "",
    /// What the host checked: `{"mode": "public" | "token" | "github" | "stripe", ...}`.
    auth: std.json.Value = .null,
    body: []const u8 = "",
    params: ?std.json.ObjectMap = null,
    headers: ?std.json.ObjectMap = null,
    pairs: []const Pair = &.{},

    /// The path variable `name` ("/notes/{id}" -> "id"), or null.
    pub fn param(self: *const Request, name: []const u8) ?[]const u8 {
        const map = self.params orelse return null;
        const v = map.get(name) orelse return null;
        return if (v == .string) v.string else null;
    }

    /// The value of header `name` in any case ("User-Agent"), or null.
    pub fn header(self: *const Request, name: []const u8) ?[]const u8 {
        const map = self.headers orelse return null;
        var it = map.iterator();
        while (it.next()) |e| {
            if (std.ascii.eqlIgnoreCase(e.key_ptr.*, name) and e.value_ptr.* == .string)
                return e.value_ptr.string;
        }
        return null;
    }

    /// The first value of query parameter `name`, or null.
    pub fn queryParam(self: *const Request, name: []const u8) ?[]const u8 {
        for (self.pairs) |p| if (std.mem.eql(u8, p.name, name)) return p.value;
        return null;
    }

    /// Every value of query parameter `name`, in order (empty when absent).
    pub fn queryAll(self: *const Request, a: std.mem.Allocator, name: []const u8) ![]const []const u8 {
        var out: std.ArrayList([]const u8) = .empty;
        for (self.pairs) |p| if (std.mem.eql(u8, p.name, name)) try out.append(a, p.value);
        return out.items;
    }

    /// The body parsed as JSON into `T` (`error.InvalidBody` when it is not one).
    pub fn json(self: *const Request, comptime T: type, a: std.mem.Allocator) !T {
        return std.json.parseFromSliceLeaky(T, a, self.body, .{
            .ignore_unknown_fields = true,
            .allocate = .alloc_always,
        }) catch return error.InvalidBody;
    }
};

pub const Header = struct { name: []const u8, value: []const u8 };

/// A route's answer. A header added twice is sent once per value (as set-cookie needs).
pub const Response = struct {
    status: u16 = 200,
    headers: std.ArrayList(Header) = .empty,
    body: []const u8 = "",
    arena: std.mem.Allocator,

    /// Adds header `name` (lower-cased).
    pub fn header(self: *Response, name: []const u8, value: []const u8) !void {
        try self.headers.append(self.arena, .{ .name = try std.ascii.allocLowerString(self.arena, name), .value = value });
    }
};

/// A response with `code`, no header and an empty body.
pub fn status(call: *omni.Call, code: u16) Response {
    return .{ .status = code, .arena = call.arena };
}

/// `text/plain; charset=utf-8` with `body`.
pub fn text(call: *omni.Call, code: u16, body: []const u8) !Response {
    var r = status(call, code);
    try r.header("content-type", "text/plain; charset=utf-8");
    r.body = body;
    return r;
}

/// `application/json` with `value` serialised by std.json.
pub fn json(call: *omni.Call, code: u16, value: anytype) !Response {
    var r = status(call, code);
    try r.header("content-type", "application/json");
    r.body = try std.json.Stringify.valueAlloc(call.arena, value, .{});
    return r;
}

fn hexDigit(c: u8) ?u8 {
    return std.fmt.charToDigit(c, 16) catch null;
}

/// `s` form-decoded: "+" is a space, "%XX" a byte; a stray "%" is kept as sent.
fn unescape(a: std.mem.Allocator, s: []const u8) ![]const u8 {
    var out: std.ArrayList(u8) = .empty;
    var i: usize = 0;
    while (i < s.len) : (i += 1) {
        if (s[i] == '+') {
            try out.append(a, ' ');
        } else if (s[i] == '%' and i + 2 < s.len and hexDigit(s[i + 1]) != null and hexDigit(s[i + 2]) != null) {
            try out.append(a, hexDigit(s[i + 1]).? * 16 + hexDigit(s[i + 2]).?);
            i += 2;
        } else {
            try out.append(a, s[i]);
        }
    }
    return out.items;
}

/// The query read by application/x-www-form-urlencoded rules, blank values kept (as the
/// host's query_params are).
fn parseQuery(a: std.mem.Allocator, query: []const u8) ![]const Pair {
    var out: std.ArrayList(Pair) = .empty;
    var parts = std.mem.splitScalar(u8, query, '&');
    while (parts.next()) |part| {
        if (part.len == 0) continue;
        const eq = std.mem.indexOfScalar(u8, part, '=');
        const name = if (eq) |e| part[0..e] else part;
        const value = if (eq) |e| part[e + 1 ..] else "";
        try out.append(a, .{ .name = try unescape(a, name), .value = try unescape(a, value) });
    }
    return out.items;
}

fn stringOf(head: std.json.ObjectMap, key: []const u8) []const u8 {
    const v = head.get(key) orelse return "";
    return if (v == .string) v.string else "";
}

fn objectOf(head: std.json.ObjectMap, key: []const u8) ?std.json.ObjectMap {
    const v = head.get(key) orelse return null;
    return if (v == .object) v.object else null;
}

/// Decodes a request envelope; on a malformed one, `error.Malformed` with the reason in
/// `why`.
pub fn decode(a: std.mem.Allocator, input: []const u8, why: *[]const u8) !Request {
    if (input.len < 4) {
        why.* = "too short for a request envelope";
        return error.Malformed;
    }
    const n = std.mem.readInt(u32, input[0..4], .little);
    if (n > input.len - 4) {
        why.* = "the head is longer than the envelope";
        return error.Malformed;
    }
    const doc = std.json.parseFromSliceLeaky(std.json.Value, a, input[4 .. 4 + n], .{}) catch {
        why.* = "the head is not JSON";
        return error.Malformed;
    };
    if (doc != .object) {
        why.* = "the head is not a JSON object";
        return error.Malformed;
    }
    const head = doc.object;
    const method = head.get("method") orelse .null;
    const path = head.get("path") orelse .null;
    if (method != .string or path != .string) {
        why.* = "the head has no \"method\" and \"path\" strings";
        return error.Malformed;
    }
    const query = stringOf(head, "query");
    return .{
        .method = method.string,
        .path = path.string,
        .query = query,
        .route = stringOf(head, "route"),
        .url = stringOf(head, "url"),
        .remote = stringOf(head, "remote"),
        .auth = head.get("auth") orelse .null,
        .params = objectOf(head, "params"),
        .headers = objectOf(head, "headers"),
        .pairs = try parseQuery(a, query),
        .body = input[4 + n ..],
    };
}

/// The response block: head length (u32 LE), `{"status": N, "headers": {...}}`, body.
pub fn encode(a: std.mem.Allocator, r: Response) ![]const u8 {
    var out: std.ArrayList(u8) = .empty;
    try out.appendSlice(a, "\x00\x00\x00\x00");
    try out.print(a, "{{\"status\":{d},\"headers\":{{", .{r.status});
    const hs = r.headers.items;
    var first = true;
    for (hs, 0..) |h, i| {
        var seen = false;
        for (hs[0..i]) |g| seen = seen or std.mem.eql(u8, g.name, h.name);
        if (seen) continue; // written with the first of its name
        var count: usize = 0;
        for (hs[i..]) |g| count += @intFromBool(std.mem.eql(u8, g.name, h.name));
        if (!first) try out.append(a, ',');
        first = false;
        try out.appendSlice(a, try std.json.Stringify.valueAlloc(a, h.name, .{}));
        try out.appendSlice(a, if (count > 1) ":[" else ":");
        var k: usize = 0;
        for (hs[i..]) |g| {
            if (!std.mem.eql(u8, g.name, h.name)) continue;
            if (k > 0) try out.append(a, ',');
            k += 1;
            try out.appendSlice(a, try std.json.Stringify.valueAlloc(a, g.value, .{}));
        }
        if (count > 1) try out.append(a, ']');
    }
    try out.appendSlice(a, "}}");
    std.mem.writeInt(u32, out.items[0..4], @intCast(out.items.len - 4), .little);
    try out.appendSlice(a, r.body);
    return out.items;
}

/// Runs route function `f` on a handler's input: the response block, whatever happens.
pub fn answer(comptime f: anytype, call: *omni.Call, input: []const u8) ![]const u8 {
    var why: []const u8 = "";
    const req = decode(call.arena, input, &why) catch |err| {
        if (err != error.Malformed) return err;
        return encode(call.arena, try text(call, 400, try call.print("malformed request envelope: {s}", .{why})));
    };
    const res = f(call, &req) catch |err| {
        const reason = if (err == error.HandlerFailed) call.message orelse "failed" else @errorName(err);
        omni.log.err("route handler failed: {s}", .{reason});
        return encode(call.arena, try text(call, 500, "internal error"));
    };
    return encode(call.arena, res);
}

/// Export `f`, a `fn (*Call, *const Request) !Response`, as handler `name` answering HTTP
/// requests (call it in a `comptime` block, as `omni.handler`).
pub fn handler(comptime name: []const u8, comptime f: anytype, comptime options: omni.Options) void {
    const Glue = struct {
        fn call(c: *omni.Call, input: []const u8) ![]const u8 {
            return answer(f, c, input);
        }
    };
    omni.handler(name, Glue.call, options);
}
