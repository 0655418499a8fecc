// The relay's unit tests: `omnicore test plugins/relay/js` (omnicore's test host, in memory).
// tests/bridges/test_relay_demo.py runs the plugin between a real NATS and a real Redis.
import assert from "node:assert/strict";
import { test } from "node:test";
import { TestHost, useTestHost, callJSON } from "omnicore/testing";
import { on_order, report } from "./plugin.js";

const decoder = new TextDecoder();

test("an order becomes a ledger entry published as `ledger`, and is counted", async () => {
  const host = useTestHost(new TestHost());
  await callJSON(on_order, { topic: "orders.created", data: { id: "A-1", cents: 1250 } });
  await callJSON(on_order, { topic: "orders.created", data: { id: "A-2", cents: 50 } });
  assert.deepEqual(host.events.map((e) => [e.topic, JSON.parse(decoder.decode(e.payload))]), [
    ["ledger", { order: "A-1", cents: 1250, relayed_by: "relay-js" }],
    ["ledger", { order: "A-2", cents: 50, relayed_by: "relay-js" }],
  ]);
  assert.deepEqual(await callJSON(report, {}), { relayed: 2, cents: 1300 });
});

test("a message that is no order is refused and publishes nothing", async () => {
  const host = useTestHost(new TestHost());
  await assert.rejects(callJSON(on_order, { topic: "orders.created", data: "hello" }),
    /invalid order/);
  assert.deepEqual(host.events, []);
  assert.deepEqual(await callJSON(report, {}), { relayed: 0, cents: 0 });
});
