// Top-level statements run in the module's start function (specs/abi.md §2.1): this one
// logs and reads config through the host before any handler is called.
import { config, fail, input, log, ok } from "omnicore";

function orElse(value: string | null, fallback: string): string {
  return value != null ? value : fallback;
}

const greeting = orElse(config.get("greeting"), "?");
log.info("loaded with greeting " + greeting);

export function hello(ptr: usize, len: usize): u64 {
  return ok(greeting + " " + input(ptr, len));
}

export function boom(ptr: usize, len: usize): u64 {
  if (len > 0) throw new Error("boom with " + input(ptr, len));
  return fail("empty");
}
