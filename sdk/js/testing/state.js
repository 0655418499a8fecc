// The TestHost the "omnicore" module currently talks to (one per test process at a time).
let host = null;

export function current() {
  if (host === null) {
    throw new Error("no TestHost in use: call useTestHost(new TestHost({...})) first "
      + "(import { TestHost, useTestHost } from \"omnicore/testing\")");
  }
  return host;
}

export function install(next) { host = next; return next; }
