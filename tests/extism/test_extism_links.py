"""Several wasm modules linked by name (issue 21, classes 4 and 5): the Extism manifest's
``wasm`` list, the sidecar's ``link`` table and ``omnicore call --link``, each run beside the
Extism Python SDK with the same modules; and every way a link can be wrong."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import extism
import pytest

from omnicore import errors
from omnicore.plugins.host import PluginHost
from tests.extism.extism_fixtures import wat_plugin

OMNICORE = [sys.executable, "-m", "omnicore.cli"]
USER = "extism:host/user"


def u64(data: bytes) -> int:
    return int.from_bytes(data, "little")


@pytest.fixture
def host() -> Iterator[PluginHost]:
    with PluginHost(failure_threshold=100) as h:
        yield h


def drop(folder: Path, **files: str) -> dict[str, Path]:
    """WAT fixtures as FILE.wasm in ``folder`` (keyword: file stem -> fixture name)."""
    out = {}
    for stem, fixture in files.items():
        out[stem] = folder / f"{stem}.wasm"
        out[stem].write_bytes(wat_plugin(fixture))
    return out


def sdk(wasm: list[dict[str, Any]], calls: list[tuple[str, bytes]], **manifest: Any
        ) -> list[bytes | Exception]:
    """The Extism SDK's outcomes for a manifest whose sources are absolute paths."""
    # functions=[]: no Python host functions (the SDK's default is every host_fn declared).
    plugin = extism.Plugin({"wasm": wasm, **manifest}, wasi=True, functions=[])
    out: list[bytes | Exception] = []
    for fn, data in calls:
        try:
            out.append(bytes(plugin.call(fn, data)))
        except extism.Error as exc:
            out.append(exc)
    return out


def ours(host: PluginHost, main: Path, calls: list[tuple[str, bytes]]) -> list[bytes | Exception]:
    info = host.load(main)
    out: list[bytes | Exception] = []
    for fn, data in calls:
        try:
            out.append(host.call(info.name, fn, data))
        except errors.PluginError as exc:
            out.append(exc)
    host.unload(info.name)
    return out


# -- class 4: the manifest's wasm list --------------------------------------------------------

def test_a_reactor_linked_by_name_keeps_its_state_as_in_extism(host: PluginHost,
                                                              tmp_path: Path) -> None:
    f = drop(tmp_path, math="link_math", p="link_main")
    (tmp_path / "p.json").write_text(json.dumps(
        {"wasm": [{"path": "math.wasm", "name": "math"}, {"path": "p.wasm"}]}))
    calls = [("run", b"x"), ("run", b"xx"), ("run", b"xxx")]
    want = sdk([{"path": str(f["math"]), "name": "math"}, {"path": str(f["p"])}], calls)
    got = ours(host, f["p"], calls)
    assert [u64(b) for b in got] == [u64(b) for b in want] == [1, 3, 6]  # type: ignore[arg-type]


def test_the_main_module_is_the_one_named_main_else_the_last(host: PluginHost,
                                                           tmp_path: Path) -> None:
    f = drop(tmp_path, math="link_math", p="link_main")
    (tmp_path / "p.json").write_text(json.dumps(
        {"wasm": [{"path": "p.wasm", "name": "main"}, {"path": "math.wasm", "name": "math"}]}))
    want = sdk([{"path": str(f["p"]), "name": "main"},
                {"path": str(f["math"]), "name": "math"}], [("run", b"xy")])
    assert ours(host, f["p"], [("run", b"xy")]) == want == [(2).to_bytes(8, "little")]


def test_a_command_module_gets_an_instance_per_call_as_in_extism(host: PluginHost,
                                                                tmp_path: Path) -> None:
    # Extism's own linking test: each call of a command's export runs in a new instance,
    # so the counter it reads is always 1.
    f = drop(tmp_path, commander="link_commander", p="link_commanded")
    (tmp_path / "p.json").write_text(json.dumps(
        {"wasm": [{"path": "commander.wasm", "name": "commander"}, {"path": "p.wasm"}]}))
    calls = [("run", b"")] * 5
    want = sdk([{"path": str(f["commander"]), "name": "commander"},
                {"path": str(f["p"]), "name": "main"}], calls)
    assert ours(host, f["p"], calls) == want == [(1).to_bytes(8, "little")] * 5


def test_command_instances_are_bounded_within_a_call(host: PluginHost, tmp_path: Path) -> None:
    # Every call of a command's export leaves an instance in the store: one call making
    # thousands is refused, and the next call starts afresh.
    f = drop(tmp_path, commander="link_commander", p="link_commanded")
    host.load(f["p"], links={"commander": f["commander"]})
    with pytest.raises(errors.Trap, match="more than 1000 times, and each call makes an"):
        host.call("p", "many", b"x" * 5000)
    assert host.call("p", "many", b"x" * 10) == b""
    assert u64(host.call("p", "run", b"")) == 1


def test_wasi_in_a_linked_module_uses_that_modules_memory(host: PluginHost,
                                                          tmp_path: Path) -> None:
    f = drop(tmp_path, printer="link_printer", p="link_says")
    (tmp_path / "p.json").write_text(json.dumps(
        {"wasm": [{"path": "printer.wasm", "name": "printer"}, {"path": "p.wasm"}]}))
    want = sdk([{"path": str(f["printer"]), "name": "printer"}, {"path": str(f["p"])}],
               [("run", b"")])
    host.load(f["p"])
    assert [host.call("p", "run", b"")] == want == [b""]
    said = [ln.message for ln in host.logs("p").lines()]
    assert said == ["from the main module!!", "from the linked module"], said


def test_the_sidecar_link_table_links_too(host: PluginHost, tmp_path: Path) -> None:
    sub = tmp_path / "mods"
    sub.mkdir()
    drop(sub, math="link_math")
    f = drop(tmp_path, p="link_main")
    (tmp_path / "p.toml").write_text('[link]\nmath = "mods/math.wasm"\n')
    assert [u64(b) for b in ours(host, f["p"], [("run", b"ab")])] == [2]  # type: ignore[arg-type]


# -- class 5: host functions from wasm -----------------------------------------------------------

def test_a_module_linked_as_extism_host_user_serves_host_functions(
        host: PluginHost, tmp_path: Path, pdk_wasm: Path) -> None:
    (tmp_path / "p.wasm").write_bytes(pdk_wasm.read_bytes())
    f = drop(tmp_path, shout="link_shout")
    (tmp_path / "p.json").write_text(json.dumps(
        {"wasm": [{"path": "shout.wasm", "name": USER}, {"path": "p.wasm"}]}))
    calls = [("user", b"hello, world"), ("count_vowels", b"aeiou")]
    want = sdk([{"path": str(f["shout"]), "name": USER}, {"path": str(pdk_wasm)}], calls)
    got = ours(host, tmp_path / "p.wasm", calls)
    assert got == want and got[0] == b"HELLO, WORLD"


def test_a_missing_host_function_names_it_and_how_to_supply_it(
        host: PluginHost, tmp_path: Path, pdk_wasm: Path) -> None:
    with pytest.raises(extism.Error):  # Extism refuses it too: shout is not defined
        extism.Plugin(pdk_wasm.read_bytes(), functions=[])
    (tmp_path / "p.wasm").write_bytes(pdk_wasm.read_bytes())
    with pytest.raises(errors.PluginLoadError) as info:
        host.load(tmp_path / "p.wasm")
    msg = str(info.value)
    assert f"Invalid function import from {USER}: shout" in msg and "\n" not in msg
    assert f"--link {USER}=FILE" in msg and "host_fn" in msg


def test_omnicore_call_link_as_extism_call_link(tmp_path: Path, pdk_wasm: Path) -> None:
    (tmp_path / "p.wasm").write_bytes(pdk_wasm.read_bytes())
    f = drop(tmp_path, shout="link_shout", math="link_math", main="link_main")
    env = {"OMNICORE_CACHE_DIR": str(tmp_path / "cache")}
    run = [*OMNICORE, "call", str(tmp_path / "p.wasm"), "user", "--input", "quiet please",
           "--link", f"{USER}={f['shout']}"]
    done = subprocess.run(run, capture_output=True, timeout=120, env={**_env(), **env})
    assert done.returncode == 0, done.stderr
    expected = sdk([{"path": str(f["shout"]), "name": USER}, {"path": str(pdk_wasm)}],
                   [("user", b"quiet please")])[0]
    assert isinstance(expected, bytes)
    assert done.stdout == expected + b"\n"  # text: `omnicore call` ends it with a newline
    done = subprocess.run([*OMNICORE, "call", str(f["main"]), "run", "--input", "abc",
                           "--link", "math=math.wasm"], capture_output=True, timeout=120,
                          cwd=tmp_path, env={**_env(), **env})
    assert done.returncode == 0, done.stderr
    assert u64(done.stdout) == 3
    for bad, says in [("math", "expected NAME=FILE"), ("math=nope.wasm", "no such file")]:
        done = subprocess.run([*OMNICORE, "call", str(f["main"]), "run", "--link", bad],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env={**_env(), **env})
        assert done.returncode != 0 and says in done.stderr, done.stderr
    # inspect's would-it-load check takes the same flag.
    done = subprocess.run([*OMNICORE, "inspect", str(f["main"]), "--link", "math=math.wasm"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**_env(), **env})
    assert done.returncode == 0 and "would load  yes" in done.stdout, done.stdout
    # Without the link: one line naming the module and the flag that supplies it.
    done = subprocess.run([*OMNICORE, "call", str(f["main"]), "run"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env={**_env(), **env})
    assert done.returncode != 0
    assert "no module is linked as 'math'" in done.stderr and "--link math=" in done.stderr


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


# -- bad links ---------------------------------------------------------------------------------

def test_a_missing_link_target_is_refused_as_extism_refuses_it(host: PluginHost,
                                                              tmp_path: Path) -> None:
    f = drop(tmp_path, p="link_main")
    with pytest.raises(extism.Error, match="unknown import"):
        extism.Plugin({"wasm": [{"path": str(f["p"])}]}, functions=[])
    with pytest.raises(errors.PluginLoadError) as info:
        host.load(f["p"])
    msg = str(info.value)
    assert "Invalid function import from math: add" in msg
    assert "no module is linked as 'math'" in msg and "\n" not in msg
    # The linked file is missing: the load names it.
    (tmp_path / "p.json").write_text(json.dumps(
        {"wasm": [{"path": "gone.wasm", "name": "math"}, {"path": "p.wasm"}]}))
    with pytest.raises(errors.OmniError, match=r"module linked as 'math' \(.*gone.wasm\)"):
        host.load(f["p"])
    # A module named but not exporting what is imported.
    drop(tmp_path, gone="link_shout")
    with pytest.raises(errors.OmniError, match="does not export add"):
        host.load(f["p"])


def test_a_link_exporting_another_type_is_refused(host: PluginHost, tmp_path: Path) -> None:
    f = drop(tmp_path, p="link_main", math="link_cycle_b")
    (tmp_path / "math.wasm").write_bytes(
        __import__("wasmtime").wat2wasm('(module (func (export "add") (param i32) (result i32)'
                                         ' (local.get 0)))'))
    with pytest.raises(errors.OmniError,
                       match=r"import math.add has type \(i64\) -> i64, and the module linked "
                             r"as 'math' exports it as \(i32\) -> i32"):
        host.load(f["p"], links={"math": f["math"]})


def test_cyclic_links_are_refused_in_one_line(host: PluginHost, tmp_path: Path) -> None:
    f = drop(tmp_path, a="link_cycle_a", b="link_cycle_b", p="link_uses_a")
    (tmp_path / "p.json").write_text(json.dumps(
        {"wasm": [{"path": "a.wasm", "name": "a"}, {"path": "b.wasm", "name": "b"},
                  {"path": "p.wasm"}]}))
    with pytest.raises(errors.OmniError) as info:
        host.load(f["p"])
    msg = str(info.value)
    assert "cycle (a -> b -> a)" in msg and "\n" not in msg
    # Extism itself never returns: it recurses until the process dies.
    script = ("import extism,sys; extism.Plugin({'wasm': [{'path': sys.argv[1], 'name': 'a'}, "
              "{'path': sys.argv[2], 'name': 'b'}, {'path': sys.argv[3]}]}, wasi=True)")
    done = subprocess.run([sys.executable, "-c", script, str(f["a"]), str(f["b"]), str(f["p"])],
                          capture_output=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0


def test_a_module_importing_from_itself_is_refused(host: PluginHost, tmp_path: Path) -> None:
    f = drop(tmp_path, p="link_uses_a")
    (tmp_path / "a.wasm").write_bytes(__import__("wasmtime").wat2wasm(
        '(module (import "a" "g" (func (result i32))) (func (export "g") (result i32) '
        '(i32.const 1)))'))
    with pytest.raises(errors.OmniError, match="'a' imports from itself"):
        host.load(f["p"], links={"a": tmp_path / "a.wasm"})


@pytest.mark.parametrize("wasm, says", [
    ([{"path": "math.wasm"}, {"path": "p.wasm"}], "Duplicate module name found in Extism "
                                                  "manifest: main"),
    ([{"path": "math.wasm", "name": "extism:host/env"}, {"path": "p.wasm"}],
     "cannot be linked as 'extism:host/env'"),
    ([{"path": "math.wasm", "name": "wasi_snapshot_preview1"}, {"path": "p.wasm"}],
     "cannot be linked as 'wasi_snapshot_preview1'"),
    ([{"path": "math.wasm", "name": "math"}, {"path": "other.wasm"}],
     "the main module is 'other.wasm', but this manifest belongs to p.wasm"),
    ([{"path": "math.wasm", "name": "math", "hash": "00" * 32}, {"path": "p.wasm"}],
     "Hash mismatch"),
    ([{"url": "http://127.0.0.1/x.wasm", "name": "math"}, {"path": "p.wasm"}],
     "no url or data sources"),
    ([], "non-empty list"),
])
def test_bad_wasm_lists_are_refused_naming_the_key(host: PluginHost, tmp_path: Path,
                                                   wasm: list[dict[str, Any]], says: str) -> None:
    f = drop(tmp_path, math="link_math", p="link_main")
    (tmp_path / "p.json").write_text(json.dumps({"wasm": wasm}))
    with pytest.raises(errors.OmniError) as info:
        host.load(f["p"])
    msg = str(info.value)
    assert says in msg and "Extism manifest key 'wasm'" in msg and "\n" not in msg


def test_a_matching_hash_links(host: PluginHost, tmp_path: Path) -> None:
    f = drop(tmp_path, math="link_math", p="link_main")
    digest = hashlib.sha256(f["math"].read_bytes()).hexdigest()
    (tmp_path / "p.json").write_text(json.dumps(
        {"wasm": [{"path": "math.wasm", "name": "math", "hash": digest}, {"path": "p.wasm"}]}))
    assert [u64(b) for b in ours(host, f["p"], [("run", b"a")])] == [1]  # type: ignore[arg-type]


def test_a_native_plugin_cannot_take_links(host: PluginHost, tmp_path: Path) -> None:
    from tests.sandbox_fixtures import compile_wat

    (tmp_path / "n.wasm").write_bytes(compile_wat("echo"))
    drop(tmp_path, math="link_math")
    with pytest.raises(errors.OmniError, match="only Extism plugins link modules by name"):
        host.load(tmp_path / "n.wasm", links={"math": tmp_path / "math.wasm"})
