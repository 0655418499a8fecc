// The counter example: `count` adds `by` (default 1) to a counter that starts at config
// `start`; `reset` puts it back. The count lives in omnicore:kv (key "count", the distance
// from `start`), so it survives a restart and every instance in the pool shares it:
// kv.incr is atomic in the host.
import { Json, Status, config, fail, input, kv, lastStatus, log, okJson } from "omnicore";

const KEY = "count";

// Config `start` (default 0); null with `why` set when it is not an integer.
let why = "";
function readStart(): Json | null {
  const text = config.get("start");
  if (text == null) {
    if (lastStatus == Status.NOT_FOUND) return Json.int(0);
    why = "config 'start' could not be read";
    return null;
  }
  const value = Json.parse(text);
  if (value == null || !value.isInteger()) {
    why = "config 'start' must be an integer";
    return null;
  }
  return value;
}

function result(count: i64): u64 {
  return okJson(Json.object().set("count", Json.int(count)));
}

export function count(ptr: usize, len: usize): u64 {
  const doc = Json.parse(input(ptr, len));
  if (doc == null) return fail("invalid JSON input: " + Json.error);
  if (!doc.isObject()) return fail("invalid input: expected an object");
  let by: i64 = 1;
  const value = doc.get("by");
  if (value != null && !value.isNull()) {
    if (!value.isInteger()) return fail("invalid input: by must be an integer in the 64-bit range");
    by = value.asInt();
  }
  const start = readStart();
  if (start == null) return fail(why);
  const from = start.asInt();
  const moved = kv.incr(KEY, by);
  if (lastStatus == Status.INVALID) return fail("counter overflow: the result does not fit in 64 bits");
  if (lastStatus != Status.OK) return fail("kv.incr failed with status " + lastStatus.toString());
  const next = from + moved;
  // i64 wraps: the sum overflowed when both operands share a sign the result does not
  if (((from ^ next) & (moved ^ next)) < 0) {
    // Take the step back so the stored count stays where it was (-i64.MIN in two steps).
    if (by == i64.MIN_VALUE) { kv.incr(KEY, i64.MAX_VALUE); kv.incr(KEY, 1); } else kv.incr(KEY, -by);
    return fail("counter overflow: the result does not fit in 64 bits");
  }
  if (log.enabled(log.DEBUG)) log.debug("count += " + by.toString() + " -> " + next.toString());
  return result(next);
}

// Takes any input (it is ignored), so `reset` can be called with an empty body.
export function reset(ptr: usize, len: usize): u64 {
  const start = readStart();
  if (start == null) return fail(why);
  if (!kv.del(KEY) && lastStatus != Status.OK) return fail("kv.delete failed with status " + lastStatus.toString());
  log.info("counter reset to " + start.asInt().toString());
  return result(start.asInt());
}
