"""Component calls through omnicore vs through wasmtime-py's own ``wasmtime.component``, in
one run.

Run: ``.venv/bin/python bench/bench_components.py [--quick]``. The component is the WAT
benchmark component of the tests (tests/sandbox/components/bench.wat, assembled by
wasm-tools): a ``u32`` round trip, a 1 KiB ``string`` round trip, a 4 KiB ``list<u8>`` round
trip, and a call making one host callback (``omnicore:plugin/log#enabled``; omnicore's
is the log capability, wasmtime-py's a Python function answering true); a record of five
fields (u32, string, f64, bool, u8: tests/sandbox/components/bench-record.wat); then the handler of
an omnicore plugin component (tests/sandbox/components/bytes-plugin.wat: ``call(handler,
input: list<u8>) -> result<list<u8>, string>``) echoing 4 KiB, bytes in and out as
``app.plugins.call`` calls it; and, when ``scripts/dev setup`` built it, the Python greeter's
``greet`` (build/plugins/greeter-python.wasm: CPython, the SDK, config.get and
log.info; no wasmtime-py column). omnicore's column is ``ComponentRuntime.call``: with JSON
in and out for the plain exports (the mapping of specs/components.md, every argument checked
against its WIT type), bytes for the handler; the pool, the deadline, the memory limiter
armed; every export through the host's canonical ABI on its flat face, where the C
component call path is built in C (sandbox/_compcall.c: the JSON lowered and lifted by each
export's plan, sandbox/_compvalue.c; the runtime's call in one C call, sandbox/_complane.c),
each host callback through its C callback (``OMNICORE_CALLPATH=python`` measures the ctypes
path and sandbox/component/canonabi.py instead). The
other column calls the export with Python values (``Func.__call__`` then ``post_return``),
no limits armed. The floor beside them is omnicore's core-module call of the same bytes (an ABI
v1 handler copying its input to its output: tests/fixtures/host_echo.wat), the cost the
component's own work is measured against. Prints the median µs per call over the repeats
with its min-max (bench/_measure.py: every column gets the same iterations, repeats and
warm-up). Targets
(issue 22): u32 <= 10 µs, 1 KiB string <= 15 µs, 4 KiB list<u8> <= 30 µs, a host callback
<= 5 µs; issue 34: a 4 KiB list<u8> handler within 30 µs; issue 47: every row at least 10x
ahead of wasmtime-py's component call.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import wasmtime
from wasmtime import component as cm

from omnicore.capabilities.builtin import builtin_registry
from omnicore.cli.plugins import user_engine
from omnicore.sandbox import PluginModule, PluginRuntime, SandboxEngine
from omnicore.sandbox.component import ComponentModule, ComponentRuntime
from omnicore.sandbox.limits import Limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, measure, render

from tests.component_fixtures import wat_component, wat_plugin
from tests.host_fixtures import echo_wasm


def _wasmtime_py(engine: wasmtime.Engine, path: Path) -> tuple[wasmtime.Store, Any]:
    """The component instantiated with wasmtime-py's public API alone."""
    component = cm.Component.from_file(engine, str(path))
    linker = cm.Linker(engine)
    with linker.root() as root, root.add_instance("omnicore:plugin/log@1.0.0") as log:
        log.add_func("enabled", lambda _store, _level: True)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(2**62)
    return store, linker.instantiate(store, component)


Row = tuple[str, str, str, str, str]


def _rows(engine: SandboxEngine, core: PluginRuntime, path: Path,
          cases: list[tuple[str, str, list[Any], int]], scale: int) -> list[Row]:
    """Each case of the component at ``path``: omnicore's call beside wasmtime-py's, and
    the core module's call of the same bytes (``core``)."""
    module = PluginModule.load(engine, path, path.stem.split("-")[0])
    assert isinstance(module, ComponentModule)
    rows = []
    with ComponentRuntime(engine, module, Limits(), registry=builtin_registry()) as rt:
        store, instance = _wasmtime_py(engine.components, path)
        for label, export, values, n in cases:
            n = max(n // scale, 10)
            payload = json.dumps(values).encode()
            func = instance.get_func(store, export)
            assert func is not None

            # wasmtime-py takes and gives a list<u8> as bytes, a record as an object.
            native = [bytes(v) if export == "echo-bytes" else
                      SimpleNamespace(**v) if isinstance(v, dict) else v for v in values]

            def theirs(f: Any = func, v: list[Any] = native) -> Any:
                out = f(store, *v)
                f.post_return(store)
                return out

            ours_out = json.loads(rt.call(export, payload))
            their_out = theirs()
            if isinstance(their_out, bytes):
                their_out = list(their_out)
            elif not isinstance(their_out, (int, str, bool)):
                their_out = dict(vars(their_out))
            assert ours_out == their_out, label

            def call(e: str = export, p: bytes = payload) -> bytes:
                return rt.call(e, p)

            ours = measure(call, n)
            wt = measure(theirs, n)
            floor = measure(lambda p=payload: core.call("echo", p), n)
            rows.append((label, str(ours), str(wt), f"{ours.ratio(wt):.2f}", str(floor)))
        store.close()
    return rows


def _python_greeter(engine: SandboxEngine, scale: int) -> list[Row]:
    """The Python greeter (componentize-py: CPython in the component) as app.plugins.call
    calls it, 100 B of JSON in, config.get and log.info made: issue 47's end-to-end row. Only
    when ``scripts/dev setup`` built it (build/plugins/greeter-python.wasm)."""
    path = Path(__file__).resolve().parents[1] / "build" / "plugins" / "greeter-python.wasm"
    if not path.is_file():
        return []
    module = PluginModule.load(engine, path.read_bytes())
    assert isinstance(module, ComponentModule)
    data = b'{"name": "' + b"x" * 88 + b'"}'
    with ComponentRuntime(engine, module, Limits(pool_size=1), registry=builtin_registry(),
                          grants={"config": {}}, config={"greeting": "Hello"}) as rt:
        assert json.loads(rt.call("greet", data))["message"].startswith("Hello, x")
        ours = measure(lambda: rt.call("greet", data), max(3000 // scale, 10))
    return [("Python greeter, 100 B JSON (handler)", str(ours), "-", "-", "-")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    text, data = "x" * 1024, bytes(range(256)) * 16
    record = {"id": 7, "name": "omnicore", "score": 0.5, "ok": True, "tag": 3}
    # The user's module cache, as `omnicore call` uses it: the Python greeter's compile (18 s
    # of CPU) is not what a row measures, and happens once, not at every run.
    with user_engine() as engine, PluginRuntime(
            engine, PluginModule.load(engine, echo_wasm(), "echo"), builtin_registry(),
            limits=Limits()) as core:
        rows = _rows(engine, core, wat_component("bench"), [  # label, export, arguments, n
            ("u32 round trip", "echo32", [7], 20000),
            ("1 KiB string round trip", "echo-string", [text], 10000),
            ("4 KiB list<u8> round trip", "echo-bytes", [list(data)], 300),
            ("call + 1 host callback", "callback", [], 10000),
        ], scale)
        rows += _rows(engine, core, wat_component("bench-record"), [
            ("record of five fields round trip", "echo-record", [record], 10000)], scale)
        path = wat_plugin("bytes-plugin", {"name": "bytes", "handlers": ["echo"]})
        module = PluginModule.load(engine, path, "bytes")
        assert isinstance(module, ComponentModule)
        with ComponentRuntime(engine, module, Limits(), registry=builtin_registry()) as rt:
            store, instance = _wasmtime_py(engine.components, path)
            index = instance.get_export_index(store, "omnicore:plugin/handler@1.0.0")
            func = instance.get_func(store, instance.get_export_index(store, "call", index))
            assert func is not None
            n = max(300 // scale, 10)  # wasmtime-py takes ~1 ms per call here

            def handler(f: Any = func) -> Any:
                out = f(store, "echo", data)
                f.post_return(store)
                return out

            assert rt.call("echo", data) == data == handler()
            ours = measure(lambda: rt.call("echo", data), n)
            wt = measure(handler, n)
            floor = measure(lambda: core.call("echo", data), n)
            rows.append(("4 KiB list<u8> handler (bytes)", str(ours), str(wt),
                         f"{ours.ratio(wt):.2f}", str(floor)))
            store.close()
        rows += _python_greeter(engine, scale)
    print(f"# bench_components: µs per call, median [min-max] over 7 repeats\n# {machine()}")
    print(render(("case", "omnicore (JSON or bytes, limits)", "wasmtime-py component",
                  "omnicore / wasmtime-py", "omnicore core module, same bytes"), rows,
                 markdown=args.markdown))


if __name__ == "__main__":
    main()
