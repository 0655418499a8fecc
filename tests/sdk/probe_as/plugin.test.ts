// The probe's handlers against `omnicore test`'s test host (tests/sdk/test_assemblyscript.py):
// every capability answered in memory, as the real host answers tour's calls.
import { connectors } from "./connectors";
import { files, tour } from "./plugin";
import { call, expectEqual, hostState, setConfig, setHttp, setSecret, setSql, test } from "omnicore/testing";

test("tour: every capability in memory", () => {
  setConfig("db.port", "5432");
  setSecret("token", "s3cr3t");
  setHttp("https://up.example/items", 201, "echo: payload");
  const out = call(tour, "https://up.example");
  const expected = [
    "kv.set=true", "kv.get=ok(v1)", "kv.missing=err(-1)", "kv.incr=5", 'kv.list=ok(["k1"])',
    "kv.delete=true", "config.db=ok(5432)", "secret=ok(s3cr3t)", "secret.hidden=err(-2)",
    "events=true", "tasks.cancel=true", "http=201 echo: payload",
    "http.denied=err(-2) DENIED: https://denied.example/ (no setHttp answer in the test)",
    'memory.recall=ok([{"id":1,"tier":2,"text":"likes green tea"', "memory.forget=true",
    "vectors.upsert=true", 'vectors.search=ok([{"id":"a","score":1,"metadata":{"t":1}}])',
    "vectors.missing=err(-1)", "vectors.delete=true"];
  for (let i = 0; i < expected.length; i++) {
    if (!out.includes(expected[i])) throw new Error("missing " + expected[i] + " in " + out);
  }
  expectEqual(hostState("tasks"), '[{"id":1,"handler":"echo","payload":"later","delayMs":60000,"cancelled":true}]');
  expectEqual(hostState("events"), '[{"topic":"order.created","payload":"{}"},{"topic":"other","payload":"{}"}]');
  expectEqual(hostState("kv"), '{"big":"' + "x".repeat(2000) + '","n":"5"}');
});

test("connectors and MCP: SQL answers, an in-memory Redis, no MCP client", () => {
  setSql("SELECT id", '{"rows":[{"id":7}]}');
  const out = call(connectors, "");
  expectEqual(out, 'sql.query=ok({"columns":[{"name":"id","type":""}],"rows":[[7]]})\n'
    + "sql.commit=true\n"
    + "sql.unanswered=err(-5) UNAVAILABLE: no setSql answer for DELETE FROM t\n"
    + 'redis.set=ok("OK")\nredis.incr=ok(4)\nredis.denied=err(-2)\n'
    + "mcp.progress=err(-1)\nmcp.ask=err(-5) UNAVAILABLE: no MCP client waits on this call (a unit test)\n");
  expectEqual(hostState("redis"), '{"omnicore:plugin:k":"v","omnicore:plugin:n":"4"}');
  const calls = hostState("sql");
  if (!calls.includes('"sql":"BEGIN"') || !calls.includes('"sql":"COMMIT"')) throw new Error(calls);
});

test("fs: no directory is granted under omnicore test", () => {
  const out = call(files, "/in /out");
  if (!out.startsWith("dirs=\nread=err(-2) DENIED: no fs directory is granted for /in/a.txt\n")) throw new Error(out);
  if (!out.includes("write=err(-2) DENIED: no fs directory is granted for /out/b.txt\n")) throw new Error(out);
});
