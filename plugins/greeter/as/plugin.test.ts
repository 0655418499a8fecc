// The greeter's unit tests: `omnicore test plugins/greeter/as` (omnicore's test host, in memory).
import { greet } from "./plugin";
import { call, callError, expectEqual, setConfig, test } from "omnicore/testing";

test("greets by name with the configured greeting", () => {
  setConfig("greeting", "Ahoy");
  expectEqual(call(greet, '{"name":"Ada"}'), '{"message":"Ahoy, Ada!"}');
});

test("greets the world without a name or a greeting", () => {
  expectEqual(call(greet, "{}"), '{"message":"Hello, world!"}');
});

test("an empty name is an error", () => {
  expectEqual(callError(greet, '{"name":""}'), "name must not be empty");
});
