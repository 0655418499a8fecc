//! Unit tests for handlers: `omnicore test` compiles the plugin's tests for wasm32-wasi (`zig
//! test -target wasm32-wasi`, the build's own target) and runs the program on omnicore's test
//! host (omnicore.toolchains.testhost): every capability call goes to the host's own code, every
//! capability granted, over in-memory stores, as a plugin's call does live. `Host` sets that
//! host up and reads back what the handler did through its `omnicore:testing` imports.
//!
//! Kept here, since only the test knows them: the HTTP answers given with `setHttp` and the SQL
//! function given with `setSql`. The host never calls into a test program for an answer, so the
//! SDK hands it over (`omnicore:testing` `http_answer`, `sql_answer`) just before each request;
//! the host's own code then reads the request, refuses what it refuses and checks a query's
//! answer for the host's shape. Redis is the host's in-memory one; MCP has no client (progress
//! reaches nobody; a question is DENIED, the test's grant allowing none).
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

/// One logged line.
pub const Line = struct { level: omni.log.Level, message: []const u8 };
/// One published event (the topic as the plugin named it).
pub const Event = struct { topic: []const u8, payload: []const u8 };
/// One task enqueued (none runs).
pub const Task = struct { id: i64, handler: []const u8, payload: []const u8, delay_ms: i64, cancelled: bool };
/// What `setHttp` answers a URL with.
pub const Route = struct { status: u16, body: []const u8 };
/// A statement the plugin is about to run, for the `setSql` function (`params` as the JSON
/// array it sent).
pub const SqlCall = struct { connector: []const u8, sql: []const u8, params: []const u8 = "[]", query: bool, tx: ?i64 = null };
/// Answers a statement: the host's JSON, `{"columns": [{"name": "id", "type": "int4"}],
/// "rows": [[1]]}` for a query (the host fails any other shape INVALID), `{"rows_affected": n}`
/// for an execute; an error fails it UNAVAILABLE with the error's name.
pub const SqlAnswer = *const fn (a: std.mem.Allocator, call: SqlCall) anyerror![]const u8;
/// A statement the host ran (BEGIN, COMMIT and ROLLBACK too; `params` as JSON, tagged as the
/// host logs them; `tx` the transaction, numbered from 1).
pub const Statement = struct { connector: []const u8, sql: []const u8, params: []const u8, tx: ?i64 };

/// The test host's control (omnicore.toolchains.testhost.control). @extern keeps the import
/// names out of the way of a handler's export of the same name (a handler "reset").
fn hosted(comptime name: []const u8, comptime T: type) *const T {
    return @extern(*const T, .{ .name = name, .library_name = "omnicore:testing" });
}
const control = struct {
    const reset = hosted("reset", fn () callconv(.c) void);
    const config_set = hosted("config_set", fn (P, usize, P, usize) callconv(.c) void);
    const set_log_level = hosted("set_log_level", fn (i32) callconv(.c) void);
    const set_secret = hosted("set_secret", fn (P, usize, P, usize, i32) callconv(.c) void);
    const http_answer = hosted("http_answer", fn (P, usize, P, usize, i32) callconv(.c) void);
    const sql_answer = hosted("sql_answer", fn (P, usize, i32) callconv(.c) void);
    const logs = hosted("logs", fn (M, usize) callconv(.c) i32);
    const events = hosted("events", fn (M, usize) callconv(.c) i32);
    const tasks = hosted("tasks", fn (M, usize) callconv(.c) i32);
    const sql_statements = hosted("sql_statements", fn (M, usize) callconv(.c) i32);
    const kv_set = hosted("kv_set", fn (P, usize, P, usize) callconv(.c) void);
    const kv_get = hosted("kv_get", fn (P, usize, M, usize) callconv(.c) i32);
    const redis_get = hosted("redis_get", fn (P, usize, M, usize) callconv(.c) i32);
    const redis_ttl = hosted("redis_ttl", fn (P, usize) callconv(.c) i64);
    const redis_set = hosted("redis_set", fn (P, usize, P, usize) callconv(.c) void);
};

var current: ?*Host = null;

/// The running test's host; `init` gives every test a fresh one.
pub const Host = struct {
    arena: std.heap.ArenaAllocator,
    routes: std.StringHashMapUnmanaged(Route) = .empty,
    sql: ?SqlAnswer = null,
    /// The message of the last call that failed.
    last_error: ?[]const u8 = null,

    /// A fresh host: no config, secrets, log, kv, events, tasks, statements or Redis keys.
    pub fn init() Host {
        control.reset();
        return .{ .arena = .init(std.heap.page_allocator) };
    }

    pub fn deinit(self: *Host) void {
        self.arena.deinit();
        if (current == self) current = null;
    }

    fn a(self: *Host) std.mem.Allocator {
        current = self;
        return self.arena.allocator();
    }

    /// Config `key` (a dotted path, "db.port", as the plugin reads it) set to `text`, which
    /// the host answers verbatim.
    pub fn setConfig(_: *Host, key: []const u8, text: []const u8) !void {
        control.config_set(key.ptr, key.len, text.ptr, text.len);
    }
    /// Exposes secret `name` with `value` (names never set are DENIED, as on the host).
    pub fn setSecret(_: *Host, name: []const u8, value: []const u8) !void {
        control.set_secret(name.ptr, name.len, value.ptr, value.len, 1);
    }
    /// Exposes secret `name` without a value (the plugin reads null).
    pub fn exposeSecret(_: *Host, name: []const u8) !void {
        control.set_secret(name.ptr, name.len, "", 0, 0);
    }
    /// Lines below `level` are dropped (info by default, as the host's grant).
    pub fn setLogLevel(_: *Host, level: omni.log.Level) void {
        control.set_log_level(@intFromEnum(level));
    }
    /// HTTP to `url` (or "connector:path" through a connector) answers `status` and `body`;
    /// any other request fails UNAVAILABLE.
    pub fn setHttp(self: *Host, url: []const u8, status: u16, body: []const u8) !void {
        const al = self.a();
        try self.routes.put(al, try al.dupe(u8, url), .{ .status = status, .body = try al.dupe(u8, body) });
    }
    /// SQL statements are answered by `answer`.
    pub fn setSql(self: *Host, answer: SqlAnswer) void {
        current = self;
        self.sql = answer;
    }
    pub fn kvSet(_: *Host, key: []const u8, value: []const u8) void {
        control.kv_set(key.ptr, key.len, value.ptr, value.len);
    }
    /// The kv value at `key`, or null.
    pub fn kvGet(self: *Host, key: []const u8) ?[]const u8 {
        return self.readKeyed(control.kv_get, key);
    }
    /// Redis: the string at `key` as the plugin names it (null: no key, or not a string).
    pub fn redisGet(self: *Host, key: []const u8) !?[]const u8 {
        return self.readKeyed(control.redis_get, key);
    }
    /// Redis: `SET key value`.
    pub fn redisSet(_: *Host, key: []const u8, value: []const u8) void {
        control.redis_set(key.ptr, key.len, value.ptr, value.len);
    }
    /// Redis: `TTL key`, seconds to live (the clock does not move), -1 for none, -2 for no key.
    pub fn redisTtl(_: *Host, key: []const u8) i64 {
        return control.redis_ttl(key.ptr, key.len);
    }

    /// Calls handler `f` with `input`; its output, or `error.GuestError` with `last_error` set.
    pub fn call(self: *Host, comptime f: anytype, input: []const u8) ![]const u8 {
        current = self;
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

    /// The lines logged so far, oldest first.
    pub fn messages(self: *Host) []const Line {
        const rows = self.table(control.logs);
        const out = self.a().alloc(Line, rows.len) catch oom();
        for (rows, out) |row, *line| line.* = .{ .level = @enumFromInt(row.array.items[0].integer), .message = row.array.items[1].string };
        return out;
    }
    /// The events published so far, oldest first.
    pub fn published(self: *Host) []const Event {
        const rows = self.table(control.events);
        const out = self.a().alloc(Event, rows.len) catch oom();
        for (rows, out) |row, *event| event.* = .{ .topic = row.array.items[0].string, .payload = self.bytes(row.array.items[1]) };
        return out;
    }
    /// The tasks enqueued so far, oldest first.
    pub fn tasks(self: *Host) []const Task {
        const rows = self.table(control.tasks);
        const out = self.a().alloc(Task, rows.len) catch oom();
        for (rows, out) |row, *task| {
            const f = row.array.items;
            task.* = .{ .id = f[0].integer, .handler = f[1].string, .payload = self.bytes(f[2]), .delay_ms = f[3].integer, .cancelled = f[4].bool };
        }
        return out;
    }
    /// The SQL statements the host ran, oldest first.
    pub fn sqlCalls(self: *Host) []const Statement {
        const rows = self.table(control.sql_statements);
        const out = self.a().alloc(Statement, rows.len) catch oom();
        for (rows, out) |row, *s| {
            const f = row.array.items;
            const params = std.json.Stringify.valueAlloc(self.a(), f[2], .{}) catch oom();
            s.* = .{ .connector = f[0].string, .sql = f[1].string, .params = params, .tx = if (f[3] == .integer) f[3].integer else null };
        }
        return out;
    }

    fn read(self: *Host, f: anytype, args: anytype) ?[]u8 {
        var cap: usize = 1024;
        while (true) {
            const buf = self.a().alloc(u8, cap) catch oom();
            const n = @call(.auto, f, args ++ .{ buf.ptr, cap });
            if (n < 0) return null;
            if (@as(usize, @intCast(n)) <= cap) return buf[0..@intCast(n)];
            cap = @intCast(n);
        }
    }
    fn readKeyed(self: *Host, f: anytype, key: []const u8) ?[]const u8 {
        return self.read(f, .{ key.ptr, key.len });
    }
    fn table(self: *Host, f: anytype) []std.json.Value {
        const text = self.read(f, .{}).?;
        const doc = std.json.parseFromSliceLeaky(std.json.Value, self.a(), text, .{}) catch oom();
        return doc.array.items;
    }
    fn bytes(self: *Host, b64: std.json.Value) []const u8 {
        const d = std.base64.standard.Decoder;
        const out = self.a().alloc(u8, d.calcSizeForSlice(b64.string) catch unreachable) catch oom();
        d.decode(out, b64.string) catch unreachable;
        return out;
    }
};

fn oom() noreturn {
    @panic("omni.testing: out of memory");
}

// ---- the answers only the test knows, handed to the host before the request (omnicore.zig) ----

/// Before `omni.http.request`: the running test's `setHttp` answer for the request's URL, or
/// UNAVAILABLE naming it (always an answer, so none is left over for the next request).
pub fn answerHttp(request_json: []const u8) void {
    const h = current orelse return;
    const al = h.arena.allocator();
    const Req = struct { url: ?[]const u8 = null, connector: ?[]const u8 = null, path: ?[]const u8 = null };
    const req = std.json.parseFromSliceLeaky(Req, al, request_json, .{ .ignore_unknown_fields = true }) catch return;
    const target = req.url orelse std.fmt.allocPrint(al, "{s}:{s}", .{ req.connector orelse "", req.path orelse "" }) catch oom();
    if (h.routes.get(target)) |route| {
        const head = std.fmt.allocPrint(al, "{{\"status\":{d},\"headers\":[]}}", .{route.status}) catch oom();
        control.http_answer(head.ptr, head.len, route.body.ptr, route.body.len, 0);
    } else {
        const why = std.fmt.allocPrint(al, "UNAVAILABLE: {s}: the test gave no setHttp answer for it", .{target}) catch oom();
        control.http_answer(why.ptr, why.len, "", 0, 1);
    }
}

/// Before `omni.sql.query`/`execute`: the running test's `setSql` answer to the statement.
pub fn answerSql(conn: []const u8, request_json: []const u8, query: bool) void {
    const h = current orelse return;
    const answer = h.sql orelse return; // the host says the test gave no answer
    const al = h.arena.allocator();
    const Req = struct { sql: []const u8 = "", params: ?std.json.Value = null, tx: ?i64 = null };
    const req = std.json.parseFromSliceLeaky(Req, al, request_json, .{ .ignore_unknown_fields = true }) catch return;
    const params = if (req.params) |p| std.json.Stringify.valueAlloc(al, p, .{}) catch oom() else "[]";
    const text = answer(al, .{ .connector = conn, .sql = req.sql, .params = params, .query = query, .tx = req.tx }) catch |err| {
        const why = std.fmt.allocPrint(al, "UNAVAILABLE: {s}", .{@errorName(err)}) catch oom();
        return control.sql_answer(why.ptr, why.len, 1);
    };
    control.sql_answer(text.ptr, text.len, 0);
}
