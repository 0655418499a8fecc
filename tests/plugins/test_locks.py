"""One lock per plugin (``plugins/locks.py``), and the churn it exists for.

The churn is what an upload form or a deploy tool does to a watched folder: copy a module in,
load it, call it, unload it, delete it, thousands of distinct modules, while other threads
load, unload, reload and call the same plugins through the other doors (the folder's rescan
as the console's upload runs it, the console's reload, ``app.plugins``) and the watcher
follows the folder. It runs in a subprocess: a native handle freed while another thread used
it kills the process (SIGSEGV), and a test in this process would take pytest with it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from omnicore.plugins.locks import PluginLocks, plugin_key
from omnicore.plugins.versions import Entry
from tests.compiler import ENVIRON
from tests.host_fixtures import FIXTURES, echo_wasm

ROOT = Path(__file__).parents[2]
#: Cycles of the main loop per call path; each also runs beside two threads of other doors.
#: About 25 s a path on two loaded cores; OMNICORE_CHURN_CYCLES scales it.
CYCLES = int(os.environ.get("OMNICORE_CHURN_CYCLES", "1000"))


def test_a_lock_is_dropped_when_nobody_holds_it() -> None:
    locks = PluginLocks()
    with locks.hold(plugin_key(Path("a.wasm"), "a")):
        with locks.hold(plugin_key(Path("a.wasm").absolute(), "a")):  # one key, reentrant
            assert len(locks) == 1
        with locks.hold(plugin_key(None, "a")):  # from bytes: by name, another plugin
            assert len(locks) == 2
    assert len(locks) == 0


def test_hold_entry_follows_the_name_to_its_new_holder(tmp_path: Path) -> None:
    from omnicore.plugins.breaker import CircuitBreaker
    from omnicore.plugins.stats import CallStats

    def entry(source: Path | None) -> Entry:
        return Entry("p", source, CallStats(), CircuitBreaker("p"))

    failed, working = entry(tmp_path / "old.wasm"), entry(tmp_path / "new.wasm")
    table = {"p": failed}

    def lookup(name: str) -> Entry | None:
        found = table.get(name)
        table["p"] = working  # the name changes hands after the first look
        return found

    locks = PluginLocks()
    with locks.hold_entry("p", lookup) as got:
        assert got is working
    with locks.hold_entry("nobody", lambda _name: None) as none:
        assert none is None


def _modules(n: int) -> list[tuple[bytes, str]]:
    """``n`` distinct small modules and a handler of each: ABI v1 echoes, WASI reactors that
    write to stdout, and echoes whose handler traps (the instance is discarded)."""
    wasi = (FIXTURES / "wasi.wat").read_text()
    out: list[tuple[bytes, str]] = []
    for i in range(n):
        if i % 3 == 1:
            manifest = f'(@custom "omnicore.manifest" "{{\\"name\\":\\"p{i}\\"}}")'
            wat = wasi.replace("(module", f"(module {manifest}", 1)
            out.append((bytes(wasmtime.wat2wasm(wat)), "hello"))
        else:
            out.append((echo_wasm(f"p{i}", f"{i}.0.0"), "trap" if i % 3 == 2 else "echo"))
    return out


def churn(root: Path, cycles: int) -> int:
    """The subprocess: churn a watched folder; print what failed and how; 3 if anything
    raised a failure that is not an OmniError."""
    from omnicore.app import OmniApp
    from omnicore.errors import OmniError

    plugins = root / "plugins"
    plugins.mkdir()
    app = OmniApp("churn", overrides={"data_dir": str(root / "data"),
                                      "plugins_dir": str(plugins)},
                  environ=ENVIRON, entry_points=False)
    app.start()
    folder = app.plugins.folder
    assert folder is not None and folder.watching
    modules = _modules(cycles)
    failures: Counter[str] = Counter()
    foreign: list[str] = []
    lock = threading.Lock()
    current = [0]
    stop = threading.Event()
    start = threading.Barrier(3)

    def attempt(what: str, action: Callable[..., object], *args: object) -> None:
        try:
            action(*args)
        except OmniError as exc:
            with lock:
                failures[f"{what}: {type(exc).__name__}"] += 1
        except Exception as exc:  # what the churn must never raise
            with lock:
                foreign.append(f"{what}: {type(exc).__name__}: {exc}")

    def other_doors(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        while not stop.is_set():
            i = current[0]
            name, path = f"p{i}", plugins / f"p{i}.wasm"
            wasm, handler = modules[i]
            op = rng.randrange(7)
            if op == 0:
                attempt("load", app.plugins.load, path)
            elif op == 1:
                attempt("unload", app.plugins.unload, name)
            elif op == 2:
                attempt("reload", app.plugins.reload_file, name, path)
            elif op == 3:
                attempt("rescan", folder.sync)
            elif op == 4 and path.exists():
                attempt("rewrite", path.write_bytes, wasm)  # the watcher reloads it
            else:
                attempt("call", app.plugins.call, name, handler, b"x")

    threads = [threading.Thread(target=other_doors, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    start.wait()
    try:
        for i, (wasm, handler) in enumerate(modules):
            current[0] = i
            name, path = f"p{i}", plugins / f"p{i}.wasm"
            path.write_bytes(wasm)
            attempt("load", app.plugins.load, path)
            attempt("call", app.plugins.call, name, handler, b"x")
            attempt("unload", app.plugins.unload, name)
            path.unlink(missing_ok=True)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    app.stop()
    print(json.dumps({"cycles": cycles, "failures": failures, "foreign": foreign[:20],
                      "foreign_count": len(foreign)}))
    return 3 if foreign else 0


@pytest.mark.parametrize("callpath", ["native", "python"])
def test_churn_beside_the_watcher_never_crashes(tmp_path: Path, callpath: str) -> None:
    env = {**os.environ, "OMNICORE_CALLPATH": callpath, "PYTHONFAULTHANDLER": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    code = (f"import sys; from pathlib import Path; from tests.plugins.test_locks import churn; "
            f"sys.exit(churn(Path({str(tmp_path)!r}), {CYCLES}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    tail = proc.stderr[-4000:]
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}:\n{tail}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and report["foreign_count"] == 0, report["foreign"]
    assert report["cycles"] == CYCLES
