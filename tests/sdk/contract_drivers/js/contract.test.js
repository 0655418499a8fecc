// The JS SDK's TestHost (sdk/js/testing: omnicore's test host, served to Node) through the
// contract's requests (requests.jsonl beside this file, written by
// tests/sdk/test_contract_fakes.py): the "omnicore:native" functions a plugin's redis and sql
// calls reach, each outcome printed as "CONTRACT ok <JSON>" or "CONTRACT error <text>".
import { readFileSync } from "node:fs";
import { test } from "node:test";
import * as native from "omnicore:native";
import { TestHost, useTestHost } from "omnicore/testing";

test("the contract's requests", () => {
  let answer = null;
  useTestHost(new TestHost({ sql: () => answer }));
  const out = [];
  for (const line of readFileSync(new URL("./requests.jsonl", import.meta.url), "utf8").split("\n")) {
    if (!line) continue;
    const req = JSON.parse(line);
    if (req.reset) {
      useTestHost(new TestHost({ sql: () => answer }));
      continue;
    }
    try {
      if (req.sql) {
        answer = req.sql;
        out.push(`ok ${native.sqlQuery("db", JSON.stringify({ sql: "SELECT" }))}`);
      } else {
        out.push(`ok ${native.redisCommand("cache", JSON.stringify(req.redis))}`);
      }
    } catch (err) {
      out.push(`error ${String(err.message).replace(/\n/g, " ")}`);
    }
  }
  console.log(out.map((o) => `CONTRACT ${o}`).join("\n"));
});
