// Uses the WASI 0.2 the host gives: stdout/stderr (into the plugin log), clocks, random,
// and the filesystem (no directory is preopened).
import cliEnvironment from "wasi:cli/environment@0.2.12";
import stdout from "wasi:cli/stdout@0.2.12";
import stderr from "wasi:cli/stderr@0.2.12";
import preopens from "wasi:filesystem/preopens@0.2.12";
import wallClock from "wasi:clocks/wall-clock@0.2.12";
import random from "wasi:random/random@0.2.12";
// No TextEncoder in this runtime: ASCII is enough for the tests.
const bytes = (text) => Uint8Array.from(text, (ch) => ch.charCodeAt(0) & 0x7f);
export function shout(msg) {
  stdout.getStdout().blockingWriteAndFlush(bytes(`out: ${msg}\n`));
  stderr.getStderr().blockingWriteAndFlush(bytes(`err: ${msg}\n`));
  return msg.length;
}
export function flood(lines) {
  const out = stdout.getStdout();
  const line = bytes("x".repeat(1023) + "\n");
  for (let i = 0; i < lines; i++) out.blockingWriteAndFlush(line);
  return lines;
}
export function preopened() { return preopens.getDirectories().length; }
export function environment() { return cliEnvironment.getEnvironment(); }
export function now() { return wallClock.now().seconds; }
export function dice() { return random.getRandomU64(); }
