"""The call-path contract: the tests that run on both call paths (specs/callpath-contract.md).

``OMNICORE_CALLPATH`` chooses, for a whole process, the C call path (``sandbox/_callpath.c``
with ``_hostfunc.c``, ``_epoch.c``, ``_instantiate.c``; components' ``_compcall.c``; the C log
ring ``_logring.c``) or its pure-Python twin (``sandbox/fastcall.py``, ``hostfunc.py``'s
ctypes trampoline, the engine's Python ticker thread, ``component/flatcall.py``
through ctypes, ``logring.py``). `scripts/dev test` runs the whole suite on the
C path, then, in a second process with ``OMNICORE_CALLPATH=python``, the tests listed here
(``tests/conftest.py`` marks them ``callpath``: ``-m callpath``).

An entry is a test file or one test (``FILE::NAME``), with the behaviour of the call path it
holds. The list is the contract, not a sample: every behaviour the choice changes (an
instance's start, a call's copy in and out, its output cap, every way it fails, its deadline
and the ticker behind it, the memory and table limits, re-entrant ``omni_alloc``, every kind
of host function and how it fails, every WASI call, Extism's handlers and kernel, component
calls, the log ring) is held by some entry; a test that is not here touches the call path
only through behaviours an entry holds, and why is written down, by kind of test, in the
spec.
"""

from __future__ import annotations

#: The contract's tests, each with what of the call path it holds. All lie under the folders
#: scripts/dev's second run collects (``python_path``; tests/test_markers.py checks it).
CALLPATH_CONTRACT: dict[str, str] = {
    # --- ABI v1 plugins: start, call, output, failures (sandbox/fastcall.py vs _callpath.c)
    "tests/sandbox/test_callpath.py":
        "the path asked for is the one running (the C path's misuse tests are `native`)",
    "tests/sandbox/test_abi_fixtures.py":
        "every required export, import check and failure path of specs/abi.md, each "
        "followed by a healthy call",
    "tests/sandbox/test_abi_rules.py":
        "specs/abi.md rule by rule: packing, the E bit, buffers, re-entry, the start function",
    "tests/sandbox/test_call_errors.py":
        "any allocator x any handler result x any input size: copy in, input growth, "
        "re-entrant omni_alloc, copy out, every error typed",
    "tests/sandbox/test_native_start.py":
        "every way an instance's start fails, and what a failed start leaves behind",
    "tests/sandbox/test_limits.py":
        "every limit enforced: memory, tables, input and output caps, deadline, fuel",
    "tests/sandbox/test_failures.py":
        "one verdict per failure on each runtime; a trapped store is never called again",
    "tests/sandbox/test_hostile.py":
        "attacks from a handler, a host function, WASI, the manifest and the allocator",
    "tests/sandbox/test_fastcall.py": "the GIL let go during calls; guest memory bounds",
    "tests/sandbox/test_isolation.py":
        "per-call isolation (a start for every call) and pooled instances",
    "tests/sandbox/test_idle.py": "instances freed when idle, started again on the next call",
    "tests/sandbox/test_usage.py":
        "memory read from an instance, fuel counted by metered calls and kept after a trap",
    "tests/sandbox/test_smith.py": "random and mutated modules never hurt the host",
    "tests/sandbox/test_gc.py":
        "Wasm GC modules: a struct loop ends at the memory limit, the deadline or fuel; GC "
        "references in imports and exports refused without aborting",
    # --- The epoch ticker (sandbox/_epoch.c vs the engine's Python thread)
    "tests/sandbox/test_engine.py":
        "the ticker ticks until close and keeps time when woken late; interrupt; close "
        "waits for calls in flight",
    "tests/sandbox/test_gil_hold.py":
        "a call turning long lets other threads run and ends at its deadline or interrupt",
    # --- The deadline's door (sandbox/_deadline.h vs sandbox/deadline.py): every lane
    "tests/sandbox/test_deadline_door.py":
        "every lane (core calls with and without the GIL, metered, starts and _initialize; "
        "Extism calls and starts; WASI commands; the test host; every component lane) runs "
        "its full deadline armed while the ticker is held back by a gate its guest opens; no "
        "module but the door arms one",
    # --- Components (sandbox/_compcall.c's Face vs component/flatcall.py through ctypes): the
    # canonical face (a handler's bytes too), the JSON lane of scalar exports.
    "tests/sandbox/test_component.py":
        "component calls: every value kind, traps, deadlines, interrupt, memory and table "
        "limits, WASI output to the log ring",
    "tests/sandbox/test_component_canon.py":
        "every WIT type through the canonical face against wasmtime's value API: answers, "
        "realloc and post-return calls, failures",
    "tests/sandbox/test_component_ccall.py":
        "the JSON lane of scalar exports answers as Python does; each call its own deadline",
    "tests/sandbox/test_component_rawlift.py":
        "byte lists, strings and a plugin's handler bytes through their faces, answers and "
        "failures",
    "tests/sandbox/test_component_hostflat.py":
        "host callbacks reached from component calls: arguments, answers, traps, refusals",
    "tests/sandbox/test_component_schema.py":
        "calls with generated and mutated arguments answer as the schema says",
    "tests/sandbox/test_component_string_face.py":
        "a plain signature's string parameters kept on its face: lowered by wasmtime in the "
        "one call (no realloc call of their own), refused unless UTF-8",
    # --- Host functions (hostfunc.py's trampoline vs _callpath.HostFunction)
    "tests/sandbox/test_hostcall_kinds.py":
        "every parameter kind at its edges, every result kind wrapped to its low bits, a "
        "result of no integer type, a call from a store no runtime knows",
    "tests/sandbox/test_linker.py":
        "every argument kind (i32, ptr, len, i64, f32, f64) and result, a HostTrap and a host "
        "exception as traps, re-entrant allocation, calls from many threads",
    "tests/sandbox/test_hostfunc.py":
        "host functions called from a start function; the live map; stray callers",
    "tests/capabilities/test_log.py":
        "omnicore:log onto the chosen ring; a loop of host calls ends at the deadline",
    "tests/capabilities/test_pluginlog.py::test_the_chosen_ring_is_the_one_asked_for":
        "the log ring asked for is the one running (its other tests run both rings in one "
        "process: the `impl` fixture)",
    # --- WASI (sandbox/wasi.py, wasi_fs.py: host functions on either path)
    "tests/sandbox/test_wasi.py": "every WASI function a guest can call ends by the deadline",
    "tests/extism/test_extism_wasi.py":
        "WASI reads the calling module's memory; waits end by the deadline, in a start too",
    "tests/extism/test_extism_fs.py":
        "the fs WASI calls on granted directories: reads, writes, listings, refusals, limits",
    "tests/plugins/test_commands.py":
        "WASI commands: _start's exit code, output, directories and deadline",
    # --- Extism plugins (extism/_instance.py on the C slot or the Python path)
    "tests/extism/test_extism_callpath.py":
        "every return code, both handler shapes, a trap, a deadline, input growth",
    "tests/extism/test_conformance.py":
        "every case of the Extism conformance table, against the Extism SDK",
    "tests/extism/test_extism_as_extism.py":
        "the var-store limit, the pre-1.0 ABI and Extism's error words, against its SDK",
    "tests/extism/test_extism_links.py":
        "linked modules: host functions reading their caller's memory (pass_caller)",
    "tests/extism/test_runtime.py":
        "per-call deadlines on kept instances, inputs of changing sizes, table limits, bad "
        "input",
}


def in_contract(nodeid: str) -> bool:
    """Whether the test ``nodeid`` is one of the contract's (an entry, or in one)."""
    return any(nodeid == entry or nodeid.startswith((entry + "::", entry + "["))
               for entry in CALLPATH_CONTRACT)
