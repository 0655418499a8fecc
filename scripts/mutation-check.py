"""Break the limit and grant code on purpose, one way at a time, and check a test notices.

Run on demand (minutes; not in CI): ``.venv/bin/python scripts/mutation-check.py [-k NAME]``.
Each mutation is a small edit to a copy of the package (the checkout is never touched); the
tests that guard that code run against the copy (PYTHONPATH puts it first); a mutation that
leaves them green is a **survivor** and is printed. Exit status 1 when any survives.

These are the behaviours a reviewer once broke by hand and found unguarded (fuel refill,
stretched deadlines), and their siblings: every limit and refusal of specs/security.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "host" / "omnicore"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to host/omnicore
    old: str | tuple[str, ...]  # one edit, or several applied together
    new: str | tuple[str, ...]
    tests: tuple[str, ...]
    #: The call path the tests run on: code only one path runs is mutated there (a copy of
    #: the package keeps the C extensions it was built with, never rebuilt).
    callpath: str = "native"

    def edits(self) -> list[tuple[str, str]]:
        if isinstance(self.old, str):
            return [(self.old, str(self.new))]
        return list(zip(self.old, self.new, strict=True))


SANDBOX = ("tests/sandbox",)
LOG = ("tests/capabilities/test_pluginlog.py",)
DOOR = ("tests/sandbox/test_deadline_door.py",)
M = Mutation
MUTATIONS = [
    M("fuel not refilled per call", "sandbox/fastcall.py",
      "        if self.fuel is not None:\n            self._arm(deadline_ticks)",
      "        if False:\n            self._arm(deadline_ticks)", SANDBOX),
    M("deadlines stretched x2", "sandbox/engine.py",
      "ticks = -(-timeout_ms // self.epoch_tick_ms) + 2",
      "ticks = 2 * (-(-timeout_ms // self.epoch_tick_ms) + 2)", SANDBOX),
    # The Python trampoline's check (the C one, sandbox/_hostfunc.c, is held by the same tests).
    M("no deadline check in host calls", "sandbox/hostfunc.py",
      "            if _monotonic() > inst.deadline:\n                inst.deadline_hit = True\n"
      "                msg = _deadline_message(qualified)",
      "            if False:\n                inst.deadline_hit = True\n"
      "                msg = _deadline_message(qualified)", SANDBOX, callpath="python"),
    # The Python ticker runs only where the C one (sandbox/_epoch.c) is not built.
    M("ticker does not catch up", "sandbox/engine.py",
      "passed = 1 + max(0, int((time.monotonic() - self._due) / period))",
      "passed = 1; self._due = time.monotonic()", SANDBOX, callpath="python"),
    M("deadline armed without the ticks the ticker owes", "sandbox/engine.py",
      "return self._epoch, (0 if late < 0 else 1 + int(late * 1000 / self.epoch_tick_ms))",
      "return self._epoch, 0", SANDBOX, callpath="python"),
    # Each arming of a deadline on the Python side reverted to "epoch + N" (the ticks a late
    # ticker owes left out): the lane's case of test_deadline_door.py fails (the C sites,
    # sandbox/_callpath.c, _instantiate.c, _compcall.c, _compvalue.c, need a rebuilt copy:
    # specs/callpath-contract.md names what each broke when checked by hand).
    *(M(f"deadline armed from the epoch alone: {name}", file, old, new, DOOR, callpath=path)
      for name, file, old, new, path in (
          ("core calls", "sandbox/fastcall.py",
           "_arm_deadline(self._clock, self.ctx, deadline_ticks,\n"
           "                                        self._armed if epoch >= 0 else -1)",
           "_arm_deadline(None, self.ctx, deadline_ticks, -1)", "python"),
          ("starts, metered calls, commands", "sandbox/fastcall.py",
           "        _arm_deadline(self._clock, self.ctx, deadline_ticks)\n",
           "        _arm_deadline(None, self.ctx, deadline_ticks)\n", "python"),
          ("WASI commands", "sandbox/command.py", "clock=engine,", "clock=None,", "native"),
          ("the test host", "toolchains/testhost/program.py", "clock=self.engine,",
           "clock=None,", "native"),
          ("Extism starts", "extism/_instance.py", "arm(rt.engine, self.ctx, rt.ticks)",
           "arm(None, self.ctx, rt.ticks)", "native"),
          ("Extism calls", "extism/_instance.py",
           "arm(self._engine, self.ctx, self._ticks, self._armed)",
           "arm(None, self.ctx, self._ticks)", "python"),
          ("component calls", "sandbox/component/runtime.py",
           "        elif deadline:\n            arm(self.engine, store, self._ticks)",
           "        elif deadline:\n            arm(None, store, self._ticks)", "python"),
          ("component starts", "sandbox/component/runtime.py",
           "        else:\n            arm(self.engine, store, self._ticks)\n",
           "        else:\n            arm(None, store, self._ticks)\n", "native"),
          ("descriptor watches", "sandbox/component/descriptors.py",
           "self.start = arm(self.engine, store, self.ticks, every_tick=True)",
           "self.start = self.engine.epoch\n        arm(None, store, self.ticks, every_tick=True)",
           "native"))),
    M("tables unlimited", "sandbox/fastcall.py",
      "_store_limiter(self._store, memory_limit, table_elements, 1, tables, 1)",
      "_store_limiter(self._store, memory_limit, -1, 1, -1, 1)", SANDBOX),
    M("memory unlimited", "sandbox/fastcall.py",
      "_store_limiter(self._store, memory_limit, table_elements, 1, tables, 1)",
      "_store_limiter(self._store, -1, table_elements, 1, tables, 1)", SANDBOX),
    M("input size not checked", "sandbox/pool.py",
      "        if len(data) > self._max_input:\n            raise self.limits.input_too_large(",
      "        if False:\n            raise self.limits.input_too_large(", SANDBOX),
    M("output size not checked", "sandbox/runtime.py",
      "if not is_error and length > lim.max_output_bytes:", "if False:", SANDBOX),
    M("ungranted imports linked", "sandbox/grants.py",
      "missing = tuple(sorted(requested - granted))", "missing = ()",
      (*SANDBOX, "tests/plugins/test_host.py")),
    # The Python log ring; the C one (sandbox/_logring.c) is held by the same tests, which run
    # on both rings, but a copy of the package is not rebuilt.
    M("log rate budget off", "sandbox/logring.py",
      "if self._tokens < cost or self._line_tokens < 1:", "if False:", LOG),
    M("log ring unbounded in bytes", "sandbox/logring.py",
      "\n                                 or self._bytes > self.max_bytes):", "):", LOG),
    M("log lines not taken in order", "sandbox/logring.py",
      "self._forwarded += len(out)", "self._forwarded += len(out) + 1", LOG),
    M("absent config keys cached", "capabilities/config.py",
      "        if value is not None:\n            state.cache[text] = value",
      "        state.cache[text] = value", ("tests/capabilities/test_config.py",)),
    M("manifest depth unchecked", "sandbox/manifest.py",
      "if _text_depth(text) > MAX_MANIFEST_DEPTH:", "if False:", SANDBOX),
    M("remote schema refs allowed", "sandbox/configschema.py",
      "if not ref.startswith(\"#\"):", "if False:", SANDBOX),
    M("error result bounds unchecked", "sandbox/runtime.py",
      "                inst.memory.check(ptr, length, \"handler output\")\n", "", SANDBOX),
    M("grant options not validated", "sandbox/grants.py",
      "            cap.check_grant(options)", "            pass",
      (*SANDBOX, "tests/capabilities/test_log.py", "tests/capabilities/test_config.py")),
    M("unknown grants accepted", "sandbox/grants.py",
      "    if unknown:\n        raise ConfigError(f\"plugin {plugin!r}: unknown capability",
      "    if False:\n        raise ConfigError(f\"plugin {plugin!r}: unknown capability",
      (*SANDBOX, "tests/plugins")),
    # Compiled code taken from another module cache (omnicore precompile --from).
    M("compiled modules taken from a folder others can write", "sandbox/modcache.py",
      "why = _untrusted(source.stat(), owners)", "why = None",
      ("tests/cli/test_cli_precompile.py",)),
    M("compiled modules taken unchecked", "sandbox/modcache.py",
      "    why = _why_refused(key, origin, body, mac)\n    if why is not None:",
      "    why = None\n    if why is not None:",
      ("tests/cli/test_cli_precompile.py", "tests/sandbox/test_modcache_trust.py")),
    # Compiled code a host did not make (issue 61): the MAC, and the key it is made with.
    M("a forged entry deserialized", "sandbox/modcache.py",
      "    if not hmac.compare_digest(mac[len(MAGIC) + 8:], _mac(key, origin, body)):",
      "    if False:", ("tests/sandbox/test_modcache_trust.py",)),
    M("an entry of another module or engine taken", "sandbox/modcache.py",
      "    m.update(origin.encode())\n", "", ("tests/sandbox/test_modcache_trust.py",)),
    M("an entry compiled again by whoever waited for it", "sandbox/modcache.py",
      "        if waited:", "        if False:", ("tests/sandbox/test_modcache.py",)),
]


def run(mutation: Mutation, work: Path) -> tuple[bool, float, str]:
    """Apply ``mutation`` to a fresh copy; True when the tests caught it."""
    copy = work / "host"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(PKG, copy / "omnicore", ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "omnicore" / mutation.file
    text = target.read_text()
    for old, new in mutation.edits():
        if old not in text:
            return False, 0.0, f"the code to mutate is gone from {mutation.file}: update me"
        text = text.replace(old, new, 1)
    target.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1",
           "OMNICORE_CALLPATH": mutation.callpath}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           *mutation.tests], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    return proc.returncode != 0, time.monotonic() - start, proc.stdout[-300:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", help="only mutations whose name contains this")
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS if not args.k or args.k in m.name]
    survivors = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in chosen:
            caught, took, tail = run(m, Path(tmp))
            print(f"{'killed ' if caught else 'SURVIVED'}  {m.name}  ({took:.0f} s)", flush=True)
            if not caught:
                survivors.append(m.name)
                print("    " + tail.strip().replace("\n", "\n    "))
    print(f"{len(chosen) - len(survivors)} killed, {len(survivors)} survived")
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
