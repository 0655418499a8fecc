// Under `omnicore test` the module's start function runs in each test's fresh instance, on the
// test host, before the test sets anything up (tests/sdk/test_assemblyscript.py; its second
// test fails on purpose).
import { boom, hello } from "./plugin";
import { call, expectEqual, logs, setConfig, test } from "omnicore/testing";

test("the start function's host calls are served", () => {
  expectEqual(logs().join("\n"), "INFO loaded with greeting ?");
  setConfig("greeting", "Hey");  // read once, at start: too late for this instance
  expectEqual(call(hello, "you"), "? you");
});

test("fails on purpose: a throw in a handler fails its test with the message", () => {
  call(boom, "bad data");
});
