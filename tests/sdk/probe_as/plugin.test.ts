// The probe's handlers against `omnicore test`'s test host (tests/sdk/test_assemblyscript.py):
// the host's own capability code over in-memory services, as the real host answers tour's
// calls.
import { connectors } from "./connectors";
import { files, tour } from "./plugin";
import { call, events, expectEqual, hostState, kvGet, logs, redisGet, setConfig, setHttp, setSecret, setSql, test } from "omnicore/testing";

test("tour: every capability in memory", () => {
  setConfig("db.port", "5432");
  setSecret("token", "s3cr3t");
  setHttp("https://up.example/items", 201, "echo: payload");
  const out = call(tour, "https://up.example");
  const expected = [
    "kv.set=true", "kv.get=ok(v1)", "kv.missing=err(-1)", "kv.incr=5", 'kv.list=ok(["k1"])',
    "kv.delete=true", "config.db=ok(5432)", "secret=ok(s3cr3t)", "secret.hidden=err(-2)",
    "events=true", "tasks.cancel=true", "http=201 echo: payload",
    "http.denied=err(-5) UNAVAILABLE: the test gave no answer for this HTTP request",
    'memory.recall=ok([{"id":', '"text":"likes green tea"', "memory.forget=true",
    "vectors.upsert=true", 'vectors.search=ok([{"id":"a","score":1.000000,"metadata":{"t":1}}])',
    "vectors.missing=err(-1)", "vectors.delete=true"];
  for (let i = 0; i < expected.length; i++) {
    if (!out.includes(expected[i])) throw new Error("missing " + expected[i] + " in " + out);
  }
  // bytes in base64: "later" is bGF0ZXI=, "{}" is e30=
  expectEqual(hostState("tasks"), '[[1,"echo","bGF0ZXI=",60000,true]]');
  const published = events();
  expectEqual(published.length.toString(), "2");
  expectEqual(published[0].topic + " " + published[0].payload, "order.created {}");
  expectEqual(published[1].topic, "other");
  expectEqual(kvGet("n")!, "5");
  expectEqual(kvGet("big")!, "x".repeat(2000));
  expectTrueNull(kvGet("k1"));
  expectEqual(logs().length.toString(), "0");
});

function expectTrueNull(value: string | null): void {
  if (value != null) throw new Error("expected null, got " + value);
}

test("connectors and MCP: SQL answers, an in-memory Redis, no MCP client", () => {
  setSql("SELECT id", '{"columns":[{"name":"id","type":"int"}],"rows":[[7]]}');
  const out = call(connectors, "");
  expectEqual(out, 'sql.query=ok({"columns":[{"name":"id","type":"int"}],"rows":[[7]]})\n'
    + "sql.commit=true\n"
    + "sql.unanswered=err(-5) UNAVAILABLE: connector db: the test gave no answer (Rust: testing::on_sql, Go: TestHost.SQL, Zig: Host.setSql, AssemblyScript: setSql, Kotlin: Host.setSql)\n"
    + 'redis.set=ok("OK")\nredis.incr=ok(4)\nredis.denied=err(-2)\n'
    + "mcp.progress=err(-1)\n"
    + "mcp.ask=err(-2) DENIED: plugin 'plugin' may not ask the client for roots: the operator grants it with mcp: {ask: [roots]}\n");
  expectEqual(hostState("redis"), '["omnicore:plugin:k","omnicore:plugin:n"]');
  expectEqual(redisGet("k")!, "v");
  expectEqual(hostState("sql"), '[["db","BEGIN",[],1],["db","SELECT id FROM t WHERE n = $1",[1],1],'
    + '["db","COMMIT",[],1],["db","DELETE FROM t",[],null]]');
});

test("a SQL query answer not shaped as the host's is INVALID", () => {
  setSql("SELECT id", '{"rows":[{"id":7}]}');
  const out = call(connectors, "");
  if (!out.startsWith("sql.query=err(-3)\n")) throw new Error(out);
});

test("fs: no directory is granted under omnicore test", () => {
  const out = call(files, "/in /out");
  if (!out.startsWith("dirs=\nread=err(-2) DENIED: no fs directory is granted for /in/a.txt\n")) throw new Error(out);
  if (!out.includes("write=err(-2) DENIED: no fs directory is granted for /out/b.txt\n")) throw new Error(out);
});
