// The greeter, as every SDK writes it: {"name": "Ada"} -> {"message": "Hello, Ada!"}.
import { config, json, log, InputError } from "omnicore";

export function greet(input) {
  const req = json(input); // throws "invalid JSON input: ..." on malformed input
  if (req === null || typeof req !== "object" || Array.isArray(req)) {
    throw new InputError("invalid JSON input: expected an object like {\"name\": \"Ada\"}");
  }
  const name = req.name ?? "world";
  if (typeof name !== "string") throw new InputError("name must be a string");
  if (name === "") throw new InputError("name must not be empty");
  const greeting = config.get("greeting", "Hello");
  log.info(`greeting ${name}`);
  return { message: `${greeting}, ${name}!` };
}
