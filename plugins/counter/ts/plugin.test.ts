// The counter's unit tests: `omnicore test plugins/counter/ts` (omnicore's test host, in memory).
import assert from "node:assert/strict";
import { test } from "node:test";
import { TestHost, useTestHost, callJSON } from "omnicore/testing";
import { count, reset } from "./plugin.ts";

test("counts from the configured start", async () => {
  const host = useTestHost(new TestHost({ config: { start: 10 } }));
  assert.deepEqual(await callJSON(count, {}), { count: 11 });
  assert.deepEqual(await callJSON(count, { by: 4 }), { count: 15 });
  assert.equal(host.kvText("count"), "5");
});

test("reset puts the counter back to its start", async () => {
  const host = useTestHost(new TestHost({ kv: { count: "7" } }));
  assert.deepEqual(await callJSON(reset, ""), { count: 0 });
  assert.equal(host.kvText("count"), null);
  assert.deepEqual(host.logs.map((l) => l.message), ["counter reset to 0"]);
});

test("the counter refuses to pass 2^53 - 1", async () => {
  useTestHost(new TestHost({ config: { start: Number.MAX_SAFE_INTEGER } }));
  await assert.rejects(callJSON(count, {}), /counter overflow/);
});
