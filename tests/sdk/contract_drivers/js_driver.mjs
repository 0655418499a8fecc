// The JS SDK's TestHost (sdk/js/testing, also AssemblyScript's test host) through the
// contract's requests (tests/sdk/test_contract_fakes.py): the "omnicore:native" functions a
// plugin's redis and sql calls reach. Usage: node js_driver.mjs SDK_TESTING_DIR REQUESTS.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [dir, path] = process.argv.slice(2);
const native = await import(pathToFileURL(join(dir, "native.js")).href);
const { TestHost, useTestHost } = await import(pathToFileURL(join(dir, "index.js")).href);

let answer = null;
let host = useTestHost(new TestHost({ sql: () => answer }));
for (const line of readFileSync(path, "utf8").split("\n")) {
  if (!line) continue;
  const req = JSON.parse(line);
  if (req.reset) {
    host = useTestHost(new TestHost({ sql: () => answer }));
    continue;
  }
  let out;
  try {
    if (req.sql) {
      answer = req.sql;
      out = native.sqlQuery("db", JSON.stringify({ sql: "SELECT" }));
    } else {
      out = native.redisCommand("cache", JSON.stringify(req.redis));
    }
  } catch (err) {
    console.log(`error ${String(err.message).replace(/\n/g, " ")}`);
    continue;
  }
  console.log(`ok ${out}`);
}
void host;
