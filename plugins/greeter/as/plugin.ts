// The greeter example: {"name": "Ada"} -> {"message": "Hello, Ada!"}.
import { Json, config, fail, input, log, okJson } from "omnicore";

export function greet(ptr: usize, len: usize): u64 {
  const doc = Json.parse(input(ptr, len));
  if (doc == null) return fail("invalid JSON input: " + Json.error + " at character " + Json.errorAt.toString());
  if (!doc.isObject()) return fail("invalid JSON input: expected an object");
  let name = "world";
  const value = doc.get("name");
  if (value != null && !value.isNull()) {
    if (!value.isString()) return fail("name must be a string");
    name = value.str;
    if (name.length == 0) return fail("name must not be empty");
  }
  const greeting = config.get("greeting");
  const word = greeting != null ? greeting : "Hello";
  log.info(`greeting ${name}`);
  return okJson(Json.object().set("message", Json.str(`${word}, ${name}!`)));
}
