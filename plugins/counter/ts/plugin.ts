// The counter example: `count` adds `by` (default 1) to a per-instance counter that starts at
// config `start`; `reset` puts it back. State lives in the instance, so it is lost when the
// host replaces the instance (durable counters belong in `kv`).
import { config, json, log, InputError } from "omnicore";

interface CountIn {
  by?: number;
}

interface CountOut {
  count: number;
}

let counter: number | undefined;

function start(): number {
  const raw = config.get("start");
  if (raw === undefined) return 0;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`config 'start' must be an integer, got ${raw}`);
  return n;
}

export function count(input: string): CountOut {
  const req = (input.trim() === "" ? {} : json(input)) as CountIn;
  if (req === null || typeof req !== "object" || Array.isArray(req)) {
    throw new InputError('invalid JSON input: expected an object like {"by": 2}');
  }
  const by = req.by ?? 1;
  if (!Number.isSafeInteger(by)) throw new InputError("by must be an integer");
  const next = (counter ?? start()) + by;
  if (!Number.isSafeInteger(next)) throw new Error("counter overflow: beyond 2^53 - 1");
  counter = next;
  log.debug(`count += ${by} -> ${next}`);
  return { count: next };
}

/** Takes any input (it is ignored), so `reset` can be called with an empty body. */
export function reset(_input: string): CountOut {
  counter = start();
  log.info(`counter reset to ${counter}`);
  return { count: counter };
}
