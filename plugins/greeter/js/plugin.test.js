// The greeter's unit tests: `omnicore test plugins/greeter/js` (omnicore's test host, in memory).
import assert from "node:assert/strict";
import { test } from "node:test";
import { TestHost, useTestHost, callJSON } from "omnicore/testing";
import { greet } from "./plugin.js";

test("greets by name with the configured greeting", async () => {
  const host = useTestHost(new TestHost({ config: { greeting: "Ahoy" } }));
  assert.deepEqual(await callJSON(greet, { name: "Ada" }), { message: "Ahoy, Ada!" });
  assert.deepEqual(host.logs, [{ level: "info", message: "greeting Ada" }]);
});

test("greets the world without a name or a greeting", async () => {
  useTestHost(new TestHost());
  assert.deepEqual(await callJSON(greet, {}), { message: "Hello, world!" });
});

test("an empty name is an error", async () => {
  useTestHost(new TestHost());
  await assert.rejects(callJSON(greet, { name: "" }), /name must not be empty/);
});
