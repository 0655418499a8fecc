// The counter's unit tests: `omnicore test plugins/counter/as`, each test in a fresh instance
// on omnicore's test host (the host's own kv and config code, in memory).
import { count, reset } from "./plugin";
import { call, callError, expectEqual, kvGet, setConfigJson, setKv, test } from "omnicore/testing";

test("counts from the configured start and resets", () => {
  setConfigJson('{"start": 10}');
  expectEqual(call(count, "{}"), '{"count":11}');
  expectEqual(call(count, '{"by": 5}'), '{"count":16}');
  expectEqual(kvGet("count")!, "6");  // the distance from start, kept in kv
  expectEqual(call(reset, ""), '{"count":10}');
});

test("counts on from what kv holds, from 0 without a start", () => {
  setKv("count", "41");
  expectEqual(call(count, "{}"), '{"count":42}');
});

test("refuses a start or a step that is not an integer", () => {
  setConfigJson('{"start": "ten"}');
  expectEqual(callError(count, "{}"), "config 'start' must be an integer");
  setConfigJson("{}");
  expectEqual(callError(count, '{"by": "2"}'), "invalid input: by must be an integer in the 64-bit range");
});

test("a count past the 64-bit range is refused and leaves the counter as it was", () => {
  expectEqual(call(count, '{"by": 9223372036854775807}'), '{"count":9223372036854775807}');
  expectEqual(callError(count, "{}"), "counter overflow: the result does not fit in 64 bits");
  expectEqual(kvGet("count")!, "9223372036854775807");
});
