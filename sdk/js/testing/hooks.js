// Node module hooks for unit tests of omnicore JS/TS plugins (registered by register.js).
//
// - "omnicore" resolves to the SDK's runtime/api.js (the module plugins get inside omnicore),
//   "omnicore:native" to ./native.js (omnicore's test host), "omnicore/testing" to ./index.js;
// - .ts/.mts files are stripped of their types with esbuild, with an inline source map, so
//   failures point to plugin.ts:LINE (run node with --enable-source-maps).
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const here = new URL("./", import.meta.url);
const MAPPED = {
  omnicore: new URL("../runtime/api.js", here).href,
  "omnicore:native": new URL("./native.js", here).href,
  "omnicore/testing": new URL("./index.js", here).href,
};

export async function resolve(specifier, context, next) {
  if (Object.hasOwn(MAPPED, specifier)) return { url: MAPPED[specifier], shortCircuit: true };
  return next(specifier, context);
}

let esbuild = null;

function transformer() {
  if (esbuild === null) {
    // OMNICORE_ESBUILD_PACKAGE: the esbuild npm package omnicore installed (build/js-tools).
    const where = process.env.OMNICORE_ESBUILD_PACKAGE;
    const require = createRequire(where ? pathToFileURL(`${where}/`) : import.meta.url);
    try {
      esbuild = require(where ? where : "esbuild");
    } catch (err) {
      throw new Error("TypeScript tests need esbuild: run them with `omnicore test`, or "
        + "`npm i -D esbuild` in the project", { cause: err });
    }
  }
  return esbuild;
}

export async function load(url, context, next) {
  if (!/\.m?ts$/.test(new URL(url).pathname)) return next(url, context);
  const source = await readFile(new URL(url), "utf8");
  const out = transformer().transformSync(source, {
    loader: "ts", format: "esm", sourcemap: "inline", sourcefile: new URL(url).pathname,
    target: "es2022",
  });
  return { format: "module", source: out.code, shortCircuit: true };
}
