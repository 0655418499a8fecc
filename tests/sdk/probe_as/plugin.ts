// Every capability of the AssemblyScript SDK once, through the real host
// (tests/sdk/test_assemblyscript.py) and through `omnicore test`'s test host (plugin.test.ts).
export { files } from "./files";
import { config, events, http, input, kv, lastError, lastStatus, memory, ok, secrets, tasks, vectors } from "omnicore";

export function echo(ptr: usize, len: usize): u64 {
  return ok(input(ptr, len));
}

function show(value: string | null): string {
  return value != null ? "ok(" + value + ")" : "err(" + lastStatus.toString() + ")";
}

function flag(done: bool): string {
  return done ? "true" : "err(" + lastStatus.toString() + ")";
}

// Input: the upstream's URL. Output: one `name=result` line per host call.
export function tour(ptr: usize, len: usize): u64 {
  const url = input(ptr, len);
  const lines: string[] = [];
  lines.push("kv.set=" + flag(kv.set("k1", "v1")));
  lines.push("kv.get=" + show(kv.get("k1")));
  lines.push("kv.missing=" + show(kv.get("nope")));
  lines.push("kv.big=" + flag(kv.set("big", "x".repeat(2000))));
  lines.push("kv.incr=" + kv.incr("n", 5).toString());
  lines.push("kv.list=" + show(kv.list("k")));
  lines.push("kv.delete=" + flag(kv.del("k1")));
  lines.push("config.db=" + show(config.get("db.port")));
  lines.push("secret=" + show(secrets.get("token")));
  lines.push("secret.unset=" + show(secrets.get("unset")));
  lines.push("secret.hidden=" + show(secrets.get("hidden")));
  lines.push("events=" + flag(events.publish("order.created", "{}")));
  lines.push("events.denied=" + flag(events.publish("other", "{}")));
  const id = tasks.enqueue("echo", "later", 60000);
  lines.push("tasks.cancel=" + flag(tasks.cancel(id)));
  const response = http.request('{"method":"POST","url":"' + url + '/items"}', "payload");
  lines.push("http=" + (response != null ? response.status.toString() + " " + response.text() : "null"));
  const denied = http.request('{"method":"GET","url":"https://denied.example/"}');
  lines.push("http.denied=" + (denied == null ? "err(" + lastStatus.toString() + ") " + lastError : "?"));
  const mem = memory.remember(memory.LONG_TERM, '{"text":"likes green tea"}');
  lines.push("memory.recall=" + show(memory.recall('{"query":"green tea"}')));
  lines.push("memory.forget=" + flag(memory.forget(mem)));
  const v = new Float32Array(2);
  v[0] = 1;
  lines.push("vectors.upsert=" + flag(vectors.upsert("c", "a", v, '{"t":1}')));
  lines.push("vectors.search=" + show(vectors.search("c", v, 1)));
  lines.push("vectors.missing=" + show(vectors.search("zz", v, 1)));
  lines.push("vectors.delete=" + flag(vectors.del("c", "a")));
  return ok(lines.join("\n") + "\n");
}
