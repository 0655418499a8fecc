//! The host functions of ABI v1 (specs/abi.md §4), as the wasm module imports them. A plugin
//! imports a namespace only when it calls one of its functions: unused ones are not linked.
const P = [*]const u8;
const M = [*]u8;

pub extern "omnicore:log" fn write(level: i32, msg: P, len: usize) void;
pub extern "omnicore:log" fn enabled(level: i32) i32;
pub const log_write = write;
pub const log_enabled = enabled;

pub const config_get = @extern(*const fn (P, usize, M, usize) callconv(.c) i32, .{ .name = "get", .library_name = "omnicore:config" });
pub const kv_get = @extern(*const fn (P, usize, M, usize) callconv(.c) i32, .{ .name = "get", .library_name = "omnicore:kv" });
pub const kv_set = @extern(*const fn (P, usize, P, usize) callconv(.c) i32, .{ .name = "set", .library_name = "omnicore:kv" });
pub const kv_delete = @extern(*const fn (P, usize) callconv(.c) i32, .{ .name = "delete", .library_name = "omnicore:kv" });
pub const kv_incr = @extern(*const fn (P, usize, i64, *i64) callconv(.c) i32, .{ .name = "incr", .library_name = "omnicore:kv" });
pub const kv_list = @extern(*const fn (P, usize, M, usize) callconv(.c) i32, .{ .name = "list", .library_name = "omnicore:kv" });
pub const events_publish = @extern(*const fn (P, usize, P, usize) callconv(.c) i32, .{ .name = "publish", .library_name = "omnicore:events" });
pub const secrets_get = @extern(*const fn (P, usize, M, usize) callconv(.c) i32, .{ .name = "get", .library_name = "omnicore:secrets" });
pub const tasks_enqueue = @extern(*const fn (P, usize, P, usize, i64) callconv(.c) i64, .{ .name = "enqueue", .library_name = "omnicore:tasks" });
pub const tasks_cancel = @extern(*const fn (i64) callconv(.c) i32, .{ .name = "cancel", .library_name = "omnicore:tasks" });
pub const http_request = @extern(*const fn (P, usize, P, usize) callconv(.c) i64, .{ .name = "request", .library_name = "omnicore:http" });
pub const sql_query = @extern(*const fn (P, usize, P, usize) callconv(.c) i64, .{ .name = "query", .library_name = "omnicore:sql" });
pub const sql_execute = @extern(*const fn (P, usize, P, usize) callconv(.c) i64, .{ .name = "execute", .library_name = "omnicore:sql" });
pub const sql_begin = @extern(*const fn (P, usize) callconv(.c) i64, .{ .name = "begin", .library_name = "omnicore:sql" });
pub const sql_commit = @extern(*const fn (i64) callconv(.c) i32, .{ .name = "commit", .library_name = "omnicore:sql" });
pub const sql_rollback = @extern(*const fn (i64) callconv(.c) i32, .{ .name = "rollback", .library_name = "omnicore:sql" });
pub const redis_command = @extern(*const fn (P, usize, P, usize) callconv(.c) i64, .{ .name = "command", .library_name = "omnicore:redis" });
pub const memory_remember = @extern(*const fn (i32, P, usize) callconv(.c) i64, .{ .name = "remember", .library_name = "omnicore:memory" });
pub const memory_recall = @extern(*const fn (P, usize, M, usize) callconv(.c) i32, .{ .name = "recall", .library_name = "omnicore:memory" });
pub const memory_forget = @extern(*const fn (i64) callconv(.c) i32, .{ .name = "forget", .library_name = "omnicore:memory" });
pub const vectors_upsert = @extern(*const fn (P, usize, P, usize, [*]const f32, i32, P, usize) callconv(.c) i32, .{ .name = "upsert", .library_name = "omnicore:vectors" });
pub const vectors_search = @extern(*const fn (P, usize, [*]const f32, i32, i32) callconv(.c) i64, .{ .name = "search", .library_name = "omnicore:vectors" });
pub const vectors_query = @extern(*const fn (P, usize, [*]const f32, i32, i32, P, usize) callconv(.c) i64, .{ .name = "query", .library_name = "omnicore:vectors" });
pub const vectors_delete = @extern(*const fn (P, usize, P, usize) callconv(.c) i32, .{ .name = "delete", .library_name = "omnicore:vectors" });
pub const mcp_progress = @extern(*const fn (f64, f64, P, usize) callconv(.c) i32, .{ .name = "progress", .library_name = "omnicore:mcp" });
pub const mcp_ask = @extern(*const fn (P, usize) callconv(.c) i64, .{ .name = "ask", .library_name = "omnicore:mcp" });
