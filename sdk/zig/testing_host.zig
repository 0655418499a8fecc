//! The test host: `omnicore test` compiles the plugin's tests for wasm32-wasi (`zig test
//! -target wasm32-wasi`, the build's own target) and runs them in wasmtime, where the SDK's
//! capability calls land here instead of in omnicore, answered with the host's statuses
//! (specs/abi.md §4): the log, config, kv, secrets (`setSecret`, `exposeSecret`; any other
//! name is DENIED), events and tasks (recorded, never run);
//! HTTP answers the URLs given with `setHttp` (any other is DENIED); SQL answers from the
//! function given with `setSql` (no database runs; every statement kept in `sql_calls`,
//! BEGIN/COMMIT/ROLLBACK too; a query's answer checked for the host's shape by the runner);
//! Redis is the runner's in-memory one (omnicore.toolchains.testredis: the host's commands,
//! replies and refusals; `redisGet`, `redisSet`, `redisTtl`); memories are recalled by the
//! words they share with the query, vectors searched exhaustively by cosine; MCP has no client
//! (progress is kept in `progress` and reaches nobody, a question is UNAVAILABLE).
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

/// One task enqueued (its id is its index in `tasks` plus one).
pub const Task = struct { handler: []const u8, payload: []const u8, delay_ms: i64, cancelled: bool = false };
/// What `setHttp` answers a URL with.
pub const Route = struct { status: u16, body: []const u8 };
/// One SQL statement the plugin ran (`params` as the JSON array it sent).
pub const SqlCall = struct { connector: []const u8, sql: []const u8, params: []const u8 = "[]", query: bool, tx: ?i64 = null };
/// Answers a statement: the host's JSON, `{"columns": [{"name": "id", "type": "int4"}],
/// "rows": [[1]]}` for a query (any other shape fails the statement: the host never sends it),
/// `{"rows_affected": n}` for an execute; an error fails it (`error.Unavailable` names none).
pub const SqlAnswer = *const fn (a: std.mem.Allocator, call: SqlCall) anyerror![]const u8;
/// One progress report.
pub const Progress = struct { done: f64, total: f64, message: []const u8 };
/// One memory remembered.
pub const Memory = struct { id: i64, tier: i32, text: []const u8, metadata: []const u8 };
const Vector = struct { values: []const f32, metadata: []const u8 };
const Collection = std.StringArrayHashMapUnmanaged(Vector);

/// What the runner (omnicore.toolchains.testrunner) serves from Python: its in-memory Redis
/// (a command's answer length, bit 31 set for a refusal, then copied out by `redis_reply`)
/// and the SQL shape check (the reason's length, 0 when the answer is the host's shape).
const runner = struct {
    extern "omnicore:testing" fn redis_command(req: P, len: usize) i64;
    extern "omnicore:testing" fn redis_reply(out: M) void;
    extern "omnicore:testing" fn redis_reset() void;
    extern "omnicore:testing" fn redis_get(key: P, len: usize, out: M, cap: usize) i32;
    extern "omnicore:testing" fn redis_ttl(key: P, len: usize) i64;
    extern "omnicore:testing" fn redis_set(key: P, len: usize, value: P, value_len: usize) void;
    extern "omnicore:testing" fn sql_check(answer: P, len: usize) i32;
    extern "omnicore:testing" fn sql_reason(out: M) void;
};

/// In-memory capabilities for a handler's unit tests; the newest `init` serves the calls.
pub const Host = struct {
    a: std.mem.Allocator = std.heap.page_allocator,
    config: Map = .empty,
    kv: Map = .empty,
    /// The secrets exposed to the plugin (null: exposed but not set); other names are DENIED.
    secrets: std.StringHashMapUnmanaged(?[]const u8) = .empty,
    lines: std.ArrayList(Line) = .empty,
    published: std.ArrayList(Event) = .empty,
    tasks: std.ArrayList(Task) = .empty,
    routes: std.StringHashMapUnmanaged(Route) = .empty,
    sql: ?SqlAnswer = null,
    sql_calls: std.ArrayList(SqlCall) = .empty,
    open_tx: std.AutoHashMapUnmanaged(i64, []const u8) = .empty,
    memories: std.ArrayList(Memory) = .empty,
    vectors: std.StringArrayHashMapUnmanaged(Collection) = .empty,
    /// The progress the handler reported (`omni.mcp.progress`).
    progress: std.ArrayList(Progress) = .empty,
    /// The §3.3 answer the SDK reads next (there is no wasm memory to hand it over in).
    block: []const u8 = "",
    block_failed: bool = false,
    /// The message of the last call that failed.
    last_error: ?[]const u8 = null,
    /// Lowest level kept (info, as the host's default grant).
    level: omni.log.Level = .info,

    /// A new host; the runner's Redis is emptied too.
    pub fn init() Host {
        runner.redis_reset();
        return .{};
    }

    pub fn deinit(self: *Host) void {
        self.config.deinit(self.a);
        self.kv.deinit(self.a);
        self.secrets.deinit(self.a);
        self.lines.deinit(self.a);
        self.published.deinit(self.a);
        self.tasks.deinit(self.a);
        self.routes.deinit(self.a);
        self.sql_calls.deinit(self.a);
        self.open_tx.deinit(self.a);
        self.memories.deinit(self.a);
        for (self.vectors.values()) |*c| c.deinit(self.a);
        self.vectors.deinit(self.a);
        self.progress.deinit(self.a);
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
    /// Exposes secret `name` without a value (the plugin reads null).
    pub fn exposeSecret(self: *Host, name: []const u8) !void {
        try self.secrets.put(self.a, try self.a.dupe(u8, name), null);
    }
    /// HTTP to `url` (or "connector:path" through a connector) answers `status` and `body`.
    pub fn setHttp(self: *Host, url: []const u8, status: u16, body: []const u8) !void {
        try self.routes.put(self.a, try self.a.dupe(u8, url), .{ .status = status, .body = try self.a.dupe(u8, body) });
    }
    /// SQL statements are answered by `answer`.
    pub fn setSql(self: *Host, answer: SqlAnswer) void {
        self.sql = answer;
    }
    /// Redis: the string at `key` as the plugin names it (null: no key, or not a string).
    pub fn redisGet(self: *Host, key: []const u8) !?[]const u8 {
        var cap: usize = 256;
        while (true) {
            const buf = try self.a.alloc(u8, cap);
            const n = runner.redis_get(key.ptr, key.len, buf.ptr, cap);
            if (n < 0) return null;
            if (@as(usize, @intCast(n)) <= cap) return buf[0..@intCast(n)];
            cap = @intCast(n);
        }
    }
    /// Redis: `SET key value`.
    pub fn redisSet(_: *Host, key: []const u8, value: []const u8) void {
        runner.redis_set(key.ptr, key.len, value.ptr, value.len);
    }
    /// Redis: `TTL key`, seconds to live (the clock does not move), -1 for none, -2 for no key.
    pub fn redisTtl(_: *Host, key: []const u8) i64 {
        return runner.redis_ttl(key.ptr, key.len);
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
        const exposed = host().secrets.get(name[0..len]) orelse return -2; // not exposed: DENIED
        return copyOut(exposed, out, cap);
    }
    pub fn tasks_enqueue(handler: P, len: usize, payload: P, payload_len: usize, delay_ms: i64) i64 {
        const h = host();
        const t: Task = .{ .handler = h.a.dupe(u8, handler[0..len]) catch return -5, .payload = h.a.dupe(u8, payload[0..payload_len]) catch return -5, .delay_ms = delay_ms };
        h.tasks.append(h.a, t) catch return -5;
        return @intCast(h.tasks.items.len);
    }
    pub fn tasks_cancel(id: i64) i32 {
        const h = host();
        if (id < 1 or id > h.tasks.items.len) return -1;
        const t = &h.tasks.items[@intCast(id - 1)];
        defer t.cancelled = true;
        return @intFromBool(!t.cancelled);
    }
    pub fn http_request(request: P, len: usize, _: P, _: usize) i64 {
        const h = host();
        const Req = struct { url: ?[]const u8 = null, connector: ?[]const u8 = null, path: ?[]const u8 = null };
        const req = std.json.parseFromSliceLeaky(Req, h.a, request[0..len], .{ .ignore_unknown_fields = true }) catch return failed("INVALID: the request is not JSON", .{});
        const target = req.url orelse (std.fmt.allocPrint(h.a, "{s}:{s}", .{ req.connector orelse "", req.path orelse "" }) catch return -5);
        const route = h.routes.get(target) orelse return failed("DENIED: {s} (no setHttp answer in the test)", .{target});
        const head = std.fmt.allocPrint(h.a, "{{\"status\":{d},\"headers\":{{}}}}", .{route.status}) catch return -5;
        var block = h.a.alloc(u8, 4 + head.len + route.body.len) catch return -5;
        std.mem.writeInt(u32, block[0..4], @intCast(head.len), .little);
        @memcpy(block[4..][0..head.len], head);
        @memcpy(block[4 + head.len ..], route.body);
        return answered(block);
    }
    pub fn sql_query(conn: P, len: usize, request: P, request_len: usize) i64 {
        return sqlRun(conn[0..len], request[0..request_len], true);
    }
    pub fn sql_execute(conn: P, len: usize, request: P, request_len: usize) i64 {
        return sqlRun(conn[0..len], request[0..request_len], false);
    }
    pub fn sql_begin(conn: P, len: usize) i64 {
        const h = host();
        const tx: i64 = @intCast(h.sql_calls.items.len + 1);
        const name = h.a.dupe(u8, conn[0..len]) catch return -5;
        h.open_tx.put(h.a, tx, name) catch return -5;
        h.sql_calls.append(h.a, .{ .connector = name, .sql = "BEGIN", .query = false, .tx = tx }) catch return -5;
        return tx;
    }
    pub fn sql_commit(tx: i64) i32 {
        return endTx(tx, "COMMIT");
    }
    pub fn sql_rollback(tx: i64) i32 {
        return endTx(tx, "ROLLBACK");
    }
    pub fn redis_command(_: P, _: usize, request: P, len: usize) i64 {
        const h = host();
        const n = runner.redis_command(request, len);
        const block = h.a.alloc(u8, @intCast(n & 0x7FFF_FFFF)) catch return -5;
        runner.redis_reply(block.ptr);
        h.block = block;
        h.block_failed = n & 0x8000_0000 != 0;
        return 0;
    }
    pub fn memory_remember(tier: i32, item: P, len: usize) i64 {
        const h = host();
        const Item = struct { text: []const u8, metadata: ?std.json.Value = null };
        const it = std.json.parseFromSliceLeaky(Item, h.a, item[0..len], .{ .ignore_unknown_fields = true }) catch return -3;
        if (tier < 0 or tier > 2) return -3;
        const meta = if (it.metadata) |m| std.json.Stringify.valueAlloc(h.a, m, .{}) catch return -5 else "{}";
        const id: i64 = if (h.memories.items.len == 0) 1 else h.memories.items[h.memories.items.len - 1].id + 1;
        h.memories.append(h.a, .{ .id = id, .tier = tier, .text = it.text, .metadata = meta }) catch return -5;
        return id;
    }
    pub fn memory_recall(query: P, len: usize, out: M, cap: usize) i32 {
        const h = host();
        const Query = struct { query: []const u8 = "", tiers: ?[]const i32 = null, limit: usize = 10, filter: ?std.json.Value = null };
        const q = std.json.parseFromSliceLeaky(Query, h.a, query[0..len], .{ .ignore_unknown_fields = true }) catch return -3;
        const Hit = struct { id: i64, tier: i32, text: []const u8, metadata: std.json.Value, score: f64 };
        var hits: std.ArrayList(Hit) = .empty;
        for (h.memories.items) |m| {
            if (q.tiers) |tiers| if (std.mem.indexOfScalar(i32, tiers, m.tier) == null) continue;
            const meta = std.json.parseFromSliceLeaky(std.json.Value, h.a, m.metadata, .{}) catch return -5;
            if (!matches(h.a, meta, q.filter)) continue;
            var score: f64 = 0;
            var words = std.mem.tokenizeAny(u8, q.query, " \t\n");
            while (words.next()) |w| {
                var own = std.mem.tokenizeAny(u8, m.text, " \t\n");
                while (own.next()) |o| if (std.ascii.eqlIgnoreCase(w, o)) {
                    score += 1;
                    break;
                };
            }
            if (score > 0 or q.query.len == 0) hits.append(h.a, .{ .id = m.id, .tier = m.tier, .text = m.text, .metadata = meta, .score = score }) catch return -5;
        }
        std.mem.sort(Hit, hits.items, {}, struct {
            fn better(_: void, x: Hit, y: Hit) bool {
                return x.score > y.score or (x.score == y.score and x.id > y.id);
            }
        }.better);
        const text = std.json.Stringify.valueAlloc(h.a, hits.items[0..@min(hits.items.len, q.limit)], .{}) catch return -5;
        return copyOut(text, out, cap);
    }
    pub fn memory_forget(id: i64) i32 {
        const h = host();
        for (h.memories.items, 0..) |m, i| if (m.id == id) {
            _ = h.memories.orderedRemove(i);
            return 1;
        };
        return 0;
    }
    pub fn vectors_upsert(coll: P, len: usize, id: P, id_len: usize, vector: [*]const f32, dim: i32, meta: P, meta_len: usize) i32 {
        const h = host();
        if (dim <= 0) return -3;
        const values = h.a.dupe(f32, vector[0..@intCast(dim)]) catch return -5;
        const entry = h.vectors.getOrPut(h.a, h.a.dupe(u8, coll[0..len]) catch return -5) catch return -5;
        if (!entry.found_existing) entry.value_ptr.* = .empty;
        for (entry.value_ptr.keys(), entry.value_ptr.values()) |k, v| {
            if (!std.mem.eql(u8, k, id[0..id_len]) and v.values.len != values.len) return -3; // one dimension
        }
        const metadata = if (meta_len == 0) "{}" else h.a.dupe(u8, meta[0..meta_len]) catch return -5;
        entry.value_ptr.put(h.a, h.a.dupe(u8, id[0..id_len]) catch return -5, .{ .values = values, .metadata = metadata }) catch return -5;
        return 0;
    }
    pub fn vectors_search(coll: P, len: usize, vector: [*]const f32, dim: i32, k: i32) i64 {
        return vectorsQuery(coll[0..len], vector[0..@intCast(@max(dim, 0))], k, "");
    }
    pub fn vectors_query(coll: P, len: usize, vector: [*]const f32, dim: i32, k: i32, filter: P, filter_len: usize) i64 {
        return vectorsQuery(coll[0..len], vector[0..@intCast(@max(dim, 0))], k, filter[0..filter_len]);
    }
    /// A unit test has no MCP client: progress reaches nobody (kept in `progress`), a
    /// question is UNAVAILABLE.
    pub fn mcp_progress(done: f64, total: f64, message: P, len: usize) i32 {
        const h = host();
        h.progress.append(h.a, .{ .done = done, .total = total, .message = h.a.dupe(u8, message[0..len]) catch return -5 }) catch return -5;
        return -1;
    }
    pub fn mcp_ask(_: P, _: usize) i64 {
        return failed("UNAVAILABLE: no MCP client waits on this call (a unit test)", .{});
    }
    pub fn vectors_delete(coll: P, len: usize, id: P, id_len: usize) i32 {
        const c = host().vectors.getPtr(coll[0..len]) orelse return -1;
        return @intFromBool(c.orderedRemove(id[0..id_len]));
    }
};

/// The block the last §3.3 function left for the SDK: its data and whether it is an error.
pub fn takeBlock() struct { []const u8, bool } {
    const h = host();
    defer {
        h.block = "";
        h.block_failed = false;
    }
    return .{ h.block, h.block_failed };
}

pub fn answered(block: []const u8) i64 {
    const h = host();
    h.block = block;
    h.block_failed = false;
    return 0;
}

/// A §3.3 error: the message (its status name first) as the block.
pub fn failed(comptime fmt: []const u8, args: anytype) i64 {
    const h = host();
    h.block = std.fmt.allocPrint(h.a, fmt, args) catch "UNAVAILABLE: out of memory";
    h.block_failed = true;
    return 0;
}

/// Whether `meta` (a JSON object) has every key-value pair of `filter`.
fn matches(a: std.mem.Allocator, meta: std.json.Value, filter: ?std.json.Value) bool {
    const f = filter orelse return true;
    if (f != .object) return false;
    if (meta != .object) return f.object.count() == 0;
    var it = f.object.iterator();
    while (it.next()) |want| {
        const have = meta.object.get(want.key_ptr.*) orelse return false;
        const x = std.json.Stringify.valueAlloc(a, have, .{}) catch return false;
        const y = std.json.Stringify.valueAlloc(a, want.value_ptr.*, .{}) catch return false;
        if (!std.mem.eql(u8, x, y)) return false;
    }
    return true;
}

fn vectorsQuery(coll: []const u8, query: []const f32, k: i32, filter_json: []const u8) i64 {
    const h = host();
    const c = h.vectors.getPtr(coll) orelse return failed("NOT_FOUND: no vector collection '{s}'", .{coll});
    if (k < 1 or k > 1000) return failed("INVALID: k must be 1-1000, got {d}", .{k});
    const filter: ?std.json.Value = if (filter_json.len == 0) null else std.json.parseFromSliceLeaky(std.json.Value, h.a, filter_json, .{}) catch return failed("INVALID: the filter must be a JSON object", .{});
    const Hit = struct { id: []const u8, score: f64, metadata: std.json.Value };
    var hits: std.ArrayList(Hit) = .empty;
    for (c.keys(), c.values()) |id, v| {
        if (v.values.len != query.len) return failed("INVALID: the vector must have {d} values", .{v.values.len});
        const meta = std.json.parseFromSliceLeaky(std.json.Value, h.a, v.metadata, .{}) catch return -5;
        if (!matches(h.a, meta, filter)) continue;
        var dot: f64 = 0;
        var nx: f64 = 0;
        var ny: f64 = 0;
        for (v.values, query) |x, y| {
            dot += x * y;
            nx += x * x;
            ny += y * y;
        }
        const score = if (nx == 0 or ny == 0) 0 else dot / @sqrt(nx * ny);
        hits.append(h.a, .{ .id = id, .score = @round(score * 1e6) / 1e6, .metadata = meta }) catch return -5;
    }
    std.mem.sort(Hit, hits.items, {}, struct {
        fn better(_: void, x: Hit, y: Hit) bool {
            return x.score > y.score;
        }
    }.better);
    const text = std.json.Stringify.valueAlloc(h.a, hits.items[0..@min(hits.items.len, @as(usize, @intCast(k)))], .{}) catch return -5;
    return answered(text);
}

fn sqlRun(conn: []const u8, request: []const u8, query: bool) i64 {
    const h = host();
    const Req = struct { sql: []const u8, params: ?std.json.Value = null, tx: ?i64 = null };
    const req = std.json.parseFromSliceLeaky(Req, h.a, request, .{ .ignore_unknown_fields = true }) catch return failed("INVALID: the request is not JSON", .{});
    const call: SqlCall = .{
        .connector = h.a.dupe(u8, conn) catch return -5,
        .sql = req.sql,
        .params = if (req.params) |p| std.json.Stringify.valueAlloc(h.a, p, .{}) catch return -5 else "[]",
        .query = query,
        .tx = req.tx,
    };
    if (call.tx) |tx| {
        const open = h.open_tx.get(tx);
        if (open == null or !std.mem.eql(u8, open.?, conn)) return failed("INVALID: transaction {d} is not open on connector {s}", .{ tx, conn });
    }
    h.sql_calls.append(h.a, call) catch return -5;
    const answer = h.sql orelse return failed("UNAVAILABLE: connector {s}: the test host has no setSql answer", .{conn});
    const text = answer(h.a, call) catch |err| return failed("UNAVAILABLE: {s}", .{@errorName(err)});
    if (query) if (notTheHosts(h.a, text)) |why| return failed("INVALID: omni.testing: the setSql answer {s} is not one the host sends: {s} (sdk/contract/host.json)", .{ text, why });
    return answered(text);
}

/// Why a query's answer is not shaped as the host's, or null (the runner checks it, as
/// every SDK's test host is held to sdk/contract/host.json): a plugin tested on another shape
/// would pass here and fail live.
fn notTheHosts(a: std.mem.Allocator, text: []const u8) ?[]const u8 {
    const n = runner.sql_check(text.ptr, text.len);
    if (n == 0) return null;
    const why = a.alloc(u8, @intCast(n)) catch return "out of memory";
    runner.sql_reason(why.ptr);
    return why;
}

fn endTx(tx: i64, what: []const u8) i32 {
    const h = host();
    const conn = (h.open_tx.fetchRemove(tx) orelse return -1).value;
    h.sql_calls.append(h.a, .{ .connector = conn, .sql = what, .query = false, .tx = tx }) catch return -5;
    return 0;
}
