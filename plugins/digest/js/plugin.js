// The digest example: it reacts to events, counts them in kv, and publishes a summary on a
// schedule; every count lives in kv, so all of it survives a restart.
//
// - note {"text", "delay_ms"?} publishes plugin.digest-js.note now, or later through a
//   durable task (tasks.enqueue) when delay_ms is given.
// - on_event {"topic", "data"} is the subscription handler (manifest `subscriptions`): one
//   more for `seen` and for `topic:<topic>`.
// - summary runs on the manifest's schedule: publishes `summary` with what was seen since the
//   previous summary, and keeps it under `last`.
// - report answers the counts.
import { events, json, kv, log, tasks, InputError } from "omnicore";

function counter(key) {
  const text = kv.getText(key);
  if (text === null) return 0;
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`kv key "${key}" does not hold a count`);
  return n;
}

export function note(input) {
  const req = json(input);
  if (req === null || typeof req !== "object" || typeof req.text !== "string" || req.text === "") {
    throw new InputError('invalid input: expected {"text": "...", "delay_ms"?: 1000}');
  }
  const delay = req.delay_ms ?? 0;
  if (!Number.isSafeInteger(delay) || delay < 0) {
    throw new InputError("delay_ms must be a non-negative integer");
  }
  if (delay > 0) return { queued: tasks.enqueue("note", { text: req.text }, { delayMs: delay }) };
  events.publish("note", { text: req.text });
  return { published: "note" };
}

export function on_event(input) {
  const event = json(input);
  if (event === null || typeof event.topic !== "string") {
    throw new InputError('invalid input: expected {"topic": "...", "data": ...}');
  }
  kv.incr("seen");
  kv.incr(`topic:${event.topic}`);
  return "";
}

export function summary(_input) {
  const seen = counter("seen");
  const since = seen - counter("seen_at_last");
  const n = Number(kv.incr("summaries"));
  const body = { summary: n, seen, since_last: since };
  kv.set("seen_at_last", String(seen));
  kv.set("last", body);
  events.publish("summary", body);
  log.info(`summary ${n}: ${seen} event(s), ${since} since the last one`);
  return { summary: n };
}

export function report(_input) {
  const topics = {};
  for (const key of kv.list("topic:")) topics[key.slice("topic:".length)] = counter(key);
  return { seen: counter("seen"), summaries: counter("summaries"), topics, last: kv.getJSON("last") };
}
