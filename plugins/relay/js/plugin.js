// The relay example: a broker's messages in, another broker's entries out, with no broker
// client in the plugin. The demo's `orders` bridge turns each NATS message on `orders.>` into
// the event `orders.created`; this plugin gets it (a durable subscription: a job per message),
// makes a ledger entry of it and publishes it as `ledger`; the `ledger` bridge appends that to
// the Redis stream `ledger`, retried until Redis confirms. docs/guides/bridges/nats.md runs it.
//
// - on_order {"topic", "data": {"id", "cents"}} publishes plugin.relay-js.ledger
//   {"order", "cents", "relayed_by"} and counts it in kv.
// - report answers how many were relayed and their total.
import { events, json, kv, InputError } from "omnicore";

function count(key) {
  const text = kv.getText(key);
  return text === null ? 0 : Number(text);
}

export function on_order(input) {
  const event = json(input);
  const order = event === null ? null : event.data;
  if (order === null || typeof order !== "object" || order.id === undefined) {
    throw new InputError('invalid order: expected {"topic": "...", "data": {"id": ..., "cents": ...}}');
  }
  const cents = Number.isSafeInteger(order.cents) ? order.cents : 0;
  events.publish("ledger", { order: order.id, cents, relayed_by: "relay-js" });
  kv.incr("relayed");
  kv.incr("cents", cents);
  return "";
}

export function report(_input) {
  return { relayed: count("relayed"), cents: count("cents") };
}
