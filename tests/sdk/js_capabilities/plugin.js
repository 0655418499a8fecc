// Exercises every omnicore namespace through the JS SDK's wrappers (tests/sdk/test_js.py).
import { config, events, http, kv, log, mcp, memory, secrets, tasks, vectors, OmniHostError,
  Tier } from "omnicore";

const status = (fn) => {
  try { fn(); return "ok"; } catch (e) { return e instanceof OmniHostError ? e.code : String(e); }
};

export function kv_roundtrip() {
  kv.set("greeting", "hi");
  kv.set("blob", new Uint8Array([0, 255, 7]));
  kv.set("obj", { a: 1 });
  const big = "x".repeat(3000); // larger than the runtime's 1 KiB first-try buffer (§3.2)
  kv.set("big", big);
  return {
    text: kv.getText("greeting"),
    blob: Array.from(kv.get("blob")),
    obj: kv.getJSON("obj"),
    big: kv.getText("big").length,
    missing: kv.get("nope"),
    incr: [kv.incr("n"), kv.incr("n", 41)],
    incr_big: [String(kv.incr("large_count", 2n ** 62n)), String(kv.incr("large_count", 0n)),
               typeof kv.incr("large_count", 0n)],
    incr_past_number: (() => { try { kv.incr("large_count"); return "no error"; }
                               catch (e) { return [e.name, String(kv.incr("large_count", 0n))]; } })(),
    incr_bad: status(() => kv.incr("greeting")),
    too_large: status(() => kv.set("huge", "y".repeat(5000))),
    list: kv.list("b"),
    deleted: [kv.delete("blob"), kv.delete("blob")],
  };
}

export function memory_roundtrip() {
  const id = memory.remember(2, "the sky is blue", { metadata: { src: "test" } });
  const found = memory.recall("sky", { limit: 3, tiers: [2] });
  return { id, found: found.map((m) => [m.id, m.text, m.metadata]), forgot: memory.forget(id),
           again: memory.forget(id) };
}

export function memory_fields() {
  memory.remember(Tier.SHORT, "ada ordered a kettle",
    { metadata: { user: "ada" }, importance: 0.9, vector: [1, 0, 0], ttl_s: 60 });
  memory.remember(Tier.SHORT, "bob ordered a kettle",
    { metadata: { user: "bob" }, importance: 0.2, vector: new Float32Array([0, 1, 0]) });
  const texts = (ms) => ms.map((m) => m.text);
  return {
    ada: texts(memory.recall("kettle", { filter: { user: "ada" } })),
    near_bob: texts(memory.recall("kettle", { vector: [0.1, 0.9, 0], limit: 1 })),
    nan: status(() => memory.remember(0, "x", { vector: [NaN, 0, 0] })),
    too_important: status(() => memory.remember(0, "x", { importance: 2 })),
    bad_filter: status(() => memory.recall("x", { filter: { user: ["a"] } })),
  };
}

export function vectors_query() {
  vectors.upsert("q", "en", [1, 0], { lang: "en" });
  vectors.upsert("q", "de", [1, 0.1], { lang: "de" });
  let bad;
  try { vectors.query("q", [1, 0], 5, { lang: ["en"] }); } catch (e) { bad = [e.code, e.message]; }
  return { en: vectors.query("q", [1, 0], 5, { lang: "en" }).map((h) => h.id),
           fr: vectors.query("q", [1, 0], 5, { lang: "fr" }),
           all: vectors.query("q", [1, 0], 5).map((h) => h.id), bad };
}

export function vectors_roundtrip() {
  vectors.upsert("docs", "a", [1, 0, 0], { title: "A" });
  vectors.upsert("docs", "b", new Float32Array([0, 1, 0]));
  const hits = vectors.search("docs", [0.9, 0.1, 0], 1);
  let missing;
  try { vectors.search("nope", [1, 0, 0]); } catch (e) { missing = [e.code, e.message]; }
  return { hits, missing, deleted: vectors.delete("docs", "a"), mismatch: status(() => vectors.upsert("docs", "c", [1, 2])) };
}

export function tasks_roundtrip() {
  const id = tasks.enqueue("config_all", { n: 1 }, { delayMs: 250 });
  return { id, unknown: status(() => tasks.enqueue("nope")), cancel: [tasks.cancel(id), tasks.cancel(id)],
           cancel_unknown: status(() => tasks.cancel(999)) };
}

export function http_roundtrip(input) {
  const base = JSON.parse(input).base;
  const get = http.get(base + "/hello");
  const post = http.post(base + "/echo", "ping", { "content-type": "text/plain" });
  const conn = http.connector("local", "GET", "/via-connector");
  let denied;
  try { http.get("https://example.com/"); } catch (e) {
    denied = [e instanceof OmniHostError, e.code, e.status, e.message];
  }
  return { get: [get.status, get.ok, get.text()], post: post.text(), conn: conn.text(), denied };
}

export function events_roundtrip() {
  events.publish("user.created", { id: 7 });
  return { denied: status(() => events.publish("secret.x", "no")) };
}

export function secrets_roundtrip() {
  return { token: secrets.getText("token"), unset: secrets.get("unset"),
           hidden: status(() => secrets.get("other")) };
}

export function config_all() {
  return { all: config.all(), nested: config.get("db.host"), num: config.value("n"),
           str_num: config.value("s"), deep: config.value("db.host"), whole: config.value(""),
           missing: config.get("nope", "fallback"), missing_value: config.value("db.nope.x", 7) };
}

// Called outside MCP: nobody listens to progress, nobody answers (tests/mcp has a client).
export function mcp_outside() {
  return {
    progress: mcp.progress(1, 2, "half"),
    asked: status(() => mcp.elicit("Who?", { type: "object" })),
    sampling: status(() => mcp.sample("hi")),
  };
}
