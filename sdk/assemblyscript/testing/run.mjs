// Runs an AssemblyScript plugin's unit tests (a module built by `omnicore test` from
// *.test.ts): each test in a fresh instance with a fresh test host.
//   node run.mjs tests.wasm <sdk/js/testing>
// The host is the JS SDK's TestHost (sdk/js/testing): the same in-memory capabilities, with
// the same statuses and error messages, as a JS plugin's tests meet; this file only carries
// the wasm ABI's (ptr, len) arguments, caller's buffers (§3.2) and blocks (§3.3) to it.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const jsTesting = process.argv[3];
const load = (file) => import(pathToFileURL(join(jsTesting, file)).href);
const { TestHost } = await load("index.js");
const { install } = await load("state.js");
const native = await load("native.js");

const module = new WebAssembly.Module(readFileSync(process.argv[2]));
const utf8 = new TextDecoder(), encode = (s) => new TextEncoder().encode(s);
const EBADF = 8;  // WASI's errno for a descriptor that is not there
const asBytes = (v) => (typeof v === "string" ? encode(v) : v);

function instance() {
  // Answers the test set up through omnicore:testing: HTTP by URL (or "connector:path"),
  // SQL by the first rule whose text the statement contains.
  const routes = new Map(), sqlRules = [];
  const host = new TestHost({
    logLevel: "info",
    http: (req) => {
      const route = routes.get(req.url ?? `${req.connector}:${req.path}`);
      if (route === undefined) throw new Error(`DENIED: ${req.url ?? req.connector} (no setHttp answer in the test)`);
      return route;
    },
    sql: (call) => {
      const rule = sqlRules.find(([match]) => call.sql.includes(match));
      if (rule === undefined) throw new Error(`UNAVAILABLE: no setSql answer for ${call.sql}`);
      return JSON.parse(rule[1]);
    },
  });
  install(host);
  let exports = null;
  const view = (p, n) => new Uint8Array(exports.memory.buffer, p, n);
  const text = (p, n) => utf8.decode(view(p, n).slice());
  const bytes = (p, n) => view(p, n).slice();
  // A caller's-buffer answer (§3.2): a status, or the length with the bytes if they fit.
  const buffer = (value, out, cap) => {
    if (typeof value === "number") return value;
    const b = asBytes(value);
    if (b.length <= cap) view(out, b.length).set(b);
    return b.length;
  };
  // A block answer (§3.3): the bytes in a block from the guest's allocator, or the message.
  const block = (answer) => {
    let data, failed = 0n;
    try { data = asBytes(answer()); } catch (err) { data = encode(err.message); failed = 0x80000000n; }
    const ptr = exports.omni_alloc(data.length);
    view(ptr, data.length).set(data);
    return (BigInt(ptr) << 32n) | BigInt(data.length) | failed;
  };
  const state = {
    tasks: () => host.tasks.map((t) => ({ ...t, payload: utf8.decode(t.payload) })),
    events: () => host.events.map((e) => ({ topic: e.topic, payload: utf8.decode(e.payload) })),
    sql: () => host.sqlCalls,
    redis: () => Object.fromEntries([...host.redis].map(([k, v]) => [k,
      v instanceof Map ? Object.fromEntries(v) : v instanceof Set ? [...v].sort() : v])),
    memories: () => host.memories,
    vectors: () => Object.fromEntries([...host.vectors].map(([c, m]) => [c, Object.fromEntries(m)])),
    logs: () => host.logs,
    kv: () => Object.fromEntries([...host.kv].map(([k, v]) => [k, utf8.decode(v)])),
  };
  const own = {
    "omnicore:testing": {
      set: (t, k, kl, v, vl) => {
        const key = text(k, kl), value = text(v, vl);
        if (t === 0) {  // a dotted key sets a nested value, as config.get("db.port") reads it
          const path = key.split("."), last = path.pop();
          let at = host.config;
          for (const part of path) at = (at[part] ??= {});
          at[last] = value;
        }
        else if (t === 1) host.secrets[key] = value;
        else host.kv.set(key, encode(value));
      },
      http: (u, ul, status, b, bl) => { routes.set(text(u, ul), { status, body: bytes(b, bl) }); },
      sql: (m, ml, a, al) => { sqlRules.push([text(m, ml), text(a, al)]); },
      state: (w, wl, o, c) => buffer(JSON.stringify(state[text(w, wl)]?.() ?? null), o, c),
    },
    "omnicore:log": {
      write: (level, p, n) => native.logWrite(level, text(p, n)),
      enabled: (level) => (native.logEnabled(level) ? 1 : 0),
    },
    "omnicore:config": { get: (k, kl, o, c) => buffer(native.configGet(text(k, kl)), o, c) },
    "omnicore:secrets": { get: (k, kl, o, c) => buffer(native.secretsGet(text(k, kl)), o, c) },
    "omnicore:kv": {
      get: (k, kl, o, c) => buffer(native.kvGet(text(k, kl)), o, c),
      set: (k, kl, v, vl) => native.kvSet(text(k, kl), bytes(v, vl)),
      delete: (k, kl) => native.kvDelete(text(k, kl)),
      incr: (k, kl, delta, out) => {
        const [status, value] = native.kvIncr(text(k, kl), delta);
        if (status < 0) return status;
        new DataView(exports.memory.buffer).setBigInt64(out, BigInt(value), true);
        return 0;
      },
      list: (p, pl, o, c) => buffer(native.kvList(text(p, pl)), o, c),
    },
    "omnicore:events": { publish: (t, tl, p, pl) => native.eventsPublish(text(t, tl), bytes(p, pl)) },
    "omnicore:tasks": {
      enqueue: (h, hl, p, pl, delay) => BigInt(native.tasksEnqueue(text(h, hl), bytes(p, pl), delay)),
      cancel: (id) => native.tasksCancel(id),
    },
    "omnicore:http": { request: (r, rl, b, bl) => block(() => native.httpRequest(text(r, rl), bytes(b, bl))) },
    "omnicore:memory": {
      remember: (tier, p, n) => BigInt(native.memRemember(tier, text(p, n))),
      recall: (q, ql, o, c) => buffer(native.memRecall(text(q, ql)), o, c),
      forget: (id) => native.memForget(id),
    },
    "omnicore:vectors": {
      upsert: (c, cl, i, il, v, dim, m, ml) => native.vecUpsert(text(c, cl), text(i, il), bytes(v, 4 * dim), text(m, ml)),
      search: (c, cl, v, dim, k) => block(() => native.vecSearch(text(c, cl), bytes(v, 4 * dim), k)),
      query: (c, cl, v, dim, k, f, fl) => block(() => native.vecQuery(text(c, cl), bytes(v, 4 * dim), k, text(f, fl))),
      delete: (c, cl, i, il) => native.vecDelete(text(c, cl), text(i, il)),
    },
    "omnicore:sql": {
      query: (c, cl, r, rl) => block(() => native.sqlQuery(text(c, cl), text(r, rl))),
      execute: (c, cl, r, rl) => block(() => native.sqlExecute(text(c, cl), text(r, rl))),
      begin: (c, cl) => BigInt(native.sqlBegin(text(c, cl))),
      commit: (tx) => native.sqlCommit(tx),
      rollback: (tx) => native.sqlRollback(tx),
    },
    "omnicore:redis": { command: (c, cl, r, rl) => block(() => native.redisCommand(text(c, cl), text(r, rl))) },
    // No MCP client in a unit test: progress reaches nobody, a question is UNAVAILABLE.
    "omnicore:mcp": {
      progress: (done, total, m, ml) => native.mcpProgress(done, total, text(m, ml)),
      ask: (r, rl) => block(() => native.mcpAsk(text(r, rl))),
    },
    // No fs directory is granted in a unit test (as for JS, whose test host has no files):
    // fd 3 is no preopen, so the SDK's fs answers every path DENIED.
    "wasi_snapshot_preview1": Object.fromEntries(["fd_prestat_get", "fd_prestat_dir_name",
      "path_open", "fd_read", "fd_write", "fd_close", "fd_readdir", "path_filestat_get",
      "path_unlink_file", "path_remove_directory", "path_create_directory"].map((n) => [n, () => EBADF])),
  };
  const imports = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    imports[imp.module] ??= {};
    const fn = own[imp.module]?.[imp.name];
    if (fn === undefined) throw new Error(`the test host has no ${imp.module} ${imp.name}`);
    imports[imp.module][imp.name] = fn;
  }
  // The start function (top-level statements) runs here and may already call the host: the
  // memory it would need is bound below, so top-level host calls are not served in tests.
  exports = new WebAssembly.Instance(module, imports).exports;
  return { exports, host, text };
}

const first = instance();
const count = first.exports.__test_count();
let failed = 0;
for (let i = 0; i < count; i++) {
  const run = i === 0 ? first : instance();
  install(run.host);
  const packed = BigInt.asUintN(64, run.exports.__test_name(i));
  const name = run.text(Number(packed >> 32n), Number(packed & 0x7fffffffn));
  try {
    run.exports.__test_run(i);
    console.log(`ok ${i + 1} - ${name}`);
  } catch (err) {
    failed++;
    const why = run.host.logs.filter((l) => l.level === "error").map((l) => l.message).join("\n") || String(err);
    console.log(`not ok ${i + 1} - ${name}\n  # ${why.replaceAll("\n", "\n  # ")}`);
  }
}
console.log(`1..${count}\n# ${count - failed} passed, ${failed} failed`);
process.exit(failed || count === 0 ? 1 : 0);
