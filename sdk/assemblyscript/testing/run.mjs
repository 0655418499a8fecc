// Runs an AssemblyScript plugin's unit tests (a module built by `omnicore test` from
// *.test.ts): each test in a fresh instance, the capabilities answered in memory.
//   node run.mjs tests.wasm
import { readFileSync } from "node:fs";

const UNAVAILABLE = -5;
const module = new WebAssembly.Module(readFileSync(process.argv[2]));
const utf8 = new TextDecoder(), encode = (s) => new TextEncoder().encode(s);

function instance() {
  const tables = [new Map(), new Map(), new Map()]; // config, secrets, kv
  const lines = [];
  let mem = null;
  const bytes = (p, n) => new Uint8Array(mem.buffer, p, n);
  const text = (p, n) => utf8.decode(bytes(p, n).slice());
  const answer = (value, out, cap) => {
    if (value === undefined) return -1;
    const b = typeof value === "string" ? encode(value) : value;
    if (b.length <= cap) bytes(out, b.length).set(b);
    return b.length;
  };
  const own = {
    "omnicore:testing": { set: (t, k, kl, v, vl) => { tables[t].set(text(k, kl), text(v, vl)); } },
    "omnicore:log": {
      write: (level, p, n) => { lines.push([level, text(p, n)]); },
      enabled: (level) => (level >= 2 ? 1 : 0),
    },
    "omnicore:config": { get: (k, kl, o, c) => answer(tables[0].get(text(k, kl)), o, c) },
    "omnicore:secrets": { get: (k, kl, o, c) => answer(tables[1].get(text(k, kl)), o, c) },
    "omnicore:kv": {
      get: (k, kl, o, c) => answer(tables[2].get(text(k, kl)), o, c),
      set: (k, kl, v, vl) => { tables[2].set(text(k, kl), text(v, vl)); return 0; },
      delete: (k, kl) => (tables[2].delete(text(k, kl)) ? 1 : 0),
      incr: (k, kl, delta, out) => {
        const next = BigInt(tables[2].get(text(k, kl)) ?? "0") + delta;
        if (next > 2n ** 63n - 1n || next < -(2n ** 63n)) return -3;
        tables[2].set(text(k, kl), next.toString());
        new DataView(mem.buffer).setBigInt64(out, next, true);
        return 0;
      },
      list: (p, pl, o, c) => {
        const prefix = text(p, pl);
        return answer(JSON.stringify([...tables[2].keys()].filter((k) => k.startsWith(prefix)).sort()), o, c);
      },
    },
    "omnicore:events": { publish: () => 0 },
  };
  const imports = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    imports[imp.module] ??= {};
    const fn = own[imp.module]?.[imp.name];
    // Anything else answers UNAVAILABLE (an i64 result as a BigInt).
    imports[imp.module][imp.name] = fn ?? (() => (/search|query|request|command|execute|begin|enqueue|remember/.test(imp.name) ? BigInt(UNAVAILABLE) : UNAVAILABLE));
  }
  // The start function (top-level statements) runs here and may already call the host: the
  // memory it would need is bound below, so top-level host calls are not served in tests.
  const exports = new WebAssembly.Instance(module, imports).exports;
  mem = exports.memory;
  return { exports, lines, text };
}

const first = instance();
const count = first.exports.__test_count();
let failed = 0;
for (let i = 0; i < count; i++) {
  const run = i === 0 ? first : instance();
  const packed = BigInt.asUintN(64, run.exports.__test_name(i));
  const name = run.text(Number(packed >> 32n), Number(packed & 0x7fffffffn));
  try {
    run.exports.__test_run(i);
    console.log(`ok ${i + 1} - ${name}`);
  } catch (err) {
    failed++;
    const why = run.lines.filter(([level]) => level >= 4).map(([, line]) => line).join("\n") || String(err);
    console.log(`not ok ${i + 1} - ${name}\n  # ${why.replaceAll("\n", "\n  # ")}`);
  }
}
console.log(`1..${count}\n# ${count - failed} passed, ${failed} failed`);
process.exit(failed || count === 0 ? 1 : 0);
