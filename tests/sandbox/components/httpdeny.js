// Sends a request through wasi:http/outgoing-handler and reports what came back.
import { handle } from "wasi:http/outgoing-handler@0.2.0";
import { Fields, OutgoingRequest } from "wasi:http/types@0.2.0";

export function answer() { return 42; }

export function send() {
  try {
    handle(new OutgoingRequest(new Fields()), undefined);
    return "sent";
  } catch (e) {
    const code = e && e.payload !== undefined ? e.payload : e;
    return "denied: " + JSON.stringify(code);
  }
}
