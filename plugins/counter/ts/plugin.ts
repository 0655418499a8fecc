// The counter example: `count` adds `by` (default 1) to a counter that starts at config
// `start`; `reset` puts it back. The count lives in `kv` (key `count`, the distance from
// `start`), so it survives a restart and every instance in the pool shares it: `kv.incr` is
// atomic in the host.
import { config, json, kv, log, InputError, type Json } from "omnicore";

interface CountIn {
  /** How much to add (default 1, an integer). */
  by?: number;
}

interface CountOut {
  /** The counter's value now. */
  count: number;
}

const KEY = "count";

function start(): number {
  const raw = config.get("start");
  if (raw === undefined) return 0;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`config 'start' must be an integer, got ${raw}`);
  return n;
}

/**
 * Adds `by` (default 1, may be negative) to the durable counter and returns its new value.
 * @title Count
 */
export function count(input: Json<CountIn>): CountOut {
  const req: CountIn = input.trim() === "" ? {} : json(input);
  if (req === null || typeof req !== "object" || Array.isArray(req)) {
    throw new InputError('invalid JSON input: expected an object like {"by": 2}');
  }
  const by = req.by ?? 1;
  if (!Number.isSafeInteger(by)) throw new InputError("by must be an integer");
  const base = start();
  const next = base + kv.incr(KEY, by);
  if (!Number.isSafeInteger(next)) {
    kv.incr(KEY, -by); // take the step back so the stored count stays where it was
    throw new Error("counter overflow: beyond 2^53 - 1");
  }
  log.debug(`count += ${by} -> ${next}`);
  return { count: next };
}

/**
 * Puts the counter back to its configured start value and returns it.
 *
 * Takes any input (it is ignored), so `reset` can be called with an empty body.
 * @title Reset the counter
 * @destructive
 */
export function reset(_input: string): CountOut {
  const counter = start();
  kv.delete(KEY);
  log.info(`counter reset to ${counter}`);
  return { count: counter };
}
