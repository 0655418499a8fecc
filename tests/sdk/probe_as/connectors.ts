// SQL, Redis and MCP from a handler, for `omnicore test`'s test host only (plugin.test.ts): the
// probe the real host loads (plugin.ts) is granted neither.
import { lastError, lastStatus, mcp, ok, redis, sql } from "omnicore";

function show(value: string | null): string {
  return value != null ? "ok(" + value + ")" : "err(" + lastStatus.toString() + ")";
}

function flag(done: bool): string {
  return done ? "true" : "err(" + lastStatus.toString() + ")";
}

// One line per call.
export function connectors(ptr: usize, len: usize): u64 {
  const lines: string[] = [];
  const tx = sql.begin("db");
  lines.push("sql.query=" + show(sql.query("db", '{"sql":"SELECT id FROM t WHERE n = $1","params":[1],"tx":' + tx.toString() + "}")));
  lines.push("sql.commit=" + flag(sql.commit(tx)));
  lines.push("sql.unanswered=" + show(sql.execute("db", '{"sql":"DELETE FROM t"}')) + " " + lastError);
  lines.push("redis.set=" + show(redis.command("cache", '{"cmd":"SET","args":["k","v"]}')));
  lines.push("redis.incr=" + show(redis.command("cache", '{"cmd":"INCRBY","args":["n",4]}')));
  lines.push("redis.denied=" + show(redis.command("cache", '{"cmd":"FLUSHALL","args":[]}')));
  lines.push("mcp.progress=" + flag(mcp.progress(1, 2, "half way")));
  lines.push("mcp.ask=" + show(mcp.ask('{"method":"roots/list","params":{}}')) + " " + lastError);
  return ok(lines.join("\n") + "\n");
}
