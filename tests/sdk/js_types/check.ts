// Compiled by tests/sdk/test_js.py with tsc against sdk/js/index.d.ts: the types must cover
// every wrapper the runtime's api.js exports, as a plugin author would call them.
import { kv, memory, vectors, tasks, http, events, secrets, config, log, bytes, json, linked, OmniHostError, Tier } from "omnicore";
export function all(input: string): unknown {
  kv.set("a", { b: 1 }); const v: Uint8Array | null = kv.get("a"); const n = kv.incr("n", 2);
  const next: number = kv.incr("n") + 1;  // the simplest counter type-checks
  const exact: bigint = kv.incr("big", 10n ** 18n);
  const id: number = memory.remember(Tier.LONG, "x", { metadata: { a: 1 } });
  memory.remember(Tier.SHORT, "y", { importance: 0.9, vector: [1, 0], ttl_s: 60 });
  const mine = memory.recall("y", { filter: { a: 1, ok: true }, vector: new Float32Array(2) });
  const only = vectors.query("c", [1, 2], 3, { lang: "en" });
  const hits = vectors.search("c", [1, 2], 3); vectors.upsert("c", "i", new Float32Array(2));
  tasks.enqueue("h", { a: 1 }, { delayMs: 5 });
  const r = http.get("https://x"); const t: string = r.text();
  events.publish("t", "p"); const s = secrets.getText("x");
  const c: number = config.value<number>("n", 0);
  log.info("x", 1); const b = bytes(); const j = json<{ a: number }>(input);
  try { kv.delete("x"); } catch (e) { if (e instanceof OmniHostError) return e.code; }
  return { v, n, next, exact, id, mine, only, hits, t, s, c, b, j, l: linked() };
}
