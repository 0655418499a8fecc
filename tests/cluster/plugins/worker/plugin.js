// Jobs for the scale-out tests (tests/cluster): every count lives in kv, which all instances
// share through PostgreSQL.
//
// - slow {"id", "ms"}: counts a start, works `ms` milliseconds, then makes its effect once
//   per id (guarded by the key effect:<id>, as an idempotency key guards a real side effect)
//   and counts a finish.
// - tick: counts a schedule fire; noop does nothing (bench: the queue's own cost); get
//   answers a kv key (bench: kv through a plugin).
// - emit {"n"}: publishes n `ping` events; on_ping (a durable subscription) counts each
//   once in the cluster, on_live (a live one) once on every host.
import { events, json, kv } from "omnicore";

export function slow(input) {
  const req = json(input);
  kv.incr(`started:${req.id}`);
  const end = Date.now() + (req.ms ?? 0);
  while (Date.now() < end) { /* work */ }
  if (kv.getText(`effect:${req.id}`) === null) {
    kv.set(`effect:${req.id}`, "1");
    kv.incr("effects");
  }
  kv.incr(`done:${req.id}`);
  return "";
}

export function tick(_input) {
  kv.incr("ticks");
  return "";
}

export function noop(_input) {
  return "";
}

export function get(input) {
  return kv.getText(input) ?? "";
}

export function emit(input) {
  const req = json(input);
  for (let i = 0; i < req.n; i++) events.publish("ping", { i });
  return "";
}

export function on_ping(_input) {
  kv.incr("pings");
  return "";
}

export function on_live(_input) {
  kv.incr("live");
  return "";
}

export function report(_input) {
  return { effects: kv.getText("effects"), ticks: kv.getText("ticks"), pings: kv.getText("pings") };
}
