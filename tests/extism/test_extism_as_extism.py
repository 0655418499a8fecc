"""Extism plugins as they run under Extism (issue 21): the same wasm and manifest through the
Extism Python SDK and through omnicore in one run, outputs and error classes compared.

Covers: config without a grant, allowed_hosts as host globs, modules with no Extism imports,
the var-store limit, the pre-1.0 ABI, and the error words an Extism user knows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import extism
import pytest
import wasmtime

from omnicore import errors
from omnicore.extism import host_fn
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import PluginModule
from tests.extism.extism_fixtures import wat_plugin

OMNICORE = [sys.executable, "-m", "omnicore.cli"]
U64_0 = (0).to_bytes(8, "little")


@extism.host_fn(name="shout")
def sdk_shout(text: str) -> str:
    return text.upper()


@host_fn(name="shout")
def our_shout(text: str) -> str:
    return text.upper()


Outcome = bytes | Exception


def sdk_run(wasm: bytes, manifest: dict[str, Any], calls: list[tuple[str, bytes]],
            wasi: bool = False) -> list[Outcome]:
    out: list[Outcome] = []
    plugin = extism.Plugin({"wasm": [{"data": wasm}], **manifest}, wasi=wasi,
                           functions=[sdk_shout])
    for fn, data in calls:
        try:
            out.append(bytes(plugin.call(fn, data)))
        except extism.Error as exc:
            out.append(exc)
    return out


@pytest.fixture
def host() -> Iterator[PluginHost]:
    with PluginHost(failure_threshold=100) as h:
        h.extism_functions.append(our_shout)
        yield h


def our_run(host: PluginHost, folder: Path, wasm: bytes, manifest: dict[str, Any],
            calls: list[tuple[str, bytes]], sidecar: str | None = None) -> list[Outcome]:
    """The plugin dropped in as an Extism user would: NAME.wasm with NAME.json, no grants."""
    (folder / "p.wasm").write_bytes(wasm)
    (folder / "p.json").write_text(json.dumps(manifest))
    if sidecar is not None:
        (folder / "p.toml").write_text(sidecar)
    host.load(folder / "p.wasm")
    out: list[Outcome] = []
    for fn, data in calls:
        try:
            out.append(host.call("p", fn, data))
        except errors.PluginError as exc:
            out.append(exc)
    host.unload("p")
    return out


def same(ours: list[Outcome], sdk: list[Outcome]) -> None:
    """Same outputs; a failure where the SDK fails."""
    assert len(ours) == len(sdk)
    for i, (a, b) in enumerate(zip(ours, sdk, strict=True)):
        assert isinstance(a, Exception) == isinstance(b, Exception), (i, a, b)
        if not isinstance(a, Exception):
            assert a == b, (i, a, b)


# -- 1: config is not a capability ------------------------------------------------------------

@pytest.mark.parametrize("config", [{"greeting": "Howdy"}, {}, None])
def test_config_get_needs_no_grant_and_reads_the_manifest(
        host: PluginHost, tmp_path: Path, config: dict[str, str] | None) -> None:
    wasm = wat_plugin("kernel")
    manifest = {} if config is None else {"config": config}
    calls = [("config", b"greeting"), ("config", b"missing")]
    ours = our_run(host, tmp_path, wasm, manifest, calls)
    same(ours, sdk_run(wasm, manifest, calls))
    assert ours == [b"Howdy" if config else U64_0, U64_0]


def test_pdk_config_with_and_without_the_key(host: PluginHost, tmp_path: Path,
                                            pdk_wasm: Path) -> None:
    wasm = pdk_wasm.read_bytes()
    manifest = {"config": {"thing": "a value"}}
    calls = [("config", b"thing"), ("config", b"other")]
    ours = our_run(host, tmp_path, wasm, manifest, calls)
    same(ours, sdk_run(wasm, manifest, calls))
    assert ours == [b"a value", b"<none>"]


# -- 2: allowed_hosts are host globs ----------------------------------------------------------

def test_allowed_hosts_match_the_host_at_any_port_as_in_extism(
        host: PluginHost, tmp_path: Path, pdk_wasm: Path, server: str) -> None:
    wasm = pdk_wasm.read_bytes()
    port = server.rsplit(":", 1)[1]
    calls = [("http", json.dumps({"url": f"{server}/a"}).encode()),
             ("http", json.dumps({"url": f"http://localhost:{port}/a"}).encode())]
    for allowed in (["127.0.0.1"], ["localhost"], ["127.0.0.1", "localhost"], ["other.test"],
                    []):
        manifest = {"allowed_hosts": allowed}
        ours = our_run(host, tmp_path, wasm, manifest, calls)
        same(ours, sdk_run(wasm, manifest, calls))
        for got in ours:
            if isinstance(got, Exception):
                assert "is not allowed" in str(got)
            else:
                assert got == b"200 got /a x=None"


def test_star_allows_every_host_and_names_no_private_address(
        host: PluginHost, tmp_path: Path, pdk_wasm: Path, server: str) -> None:
    wasm = pdk_wasm.read_bytes()
    manifest = {"allowed_hosts": ["*"]}
    calls = [("http", json.dumps({"url": f"{server}/a"}).encode())]
    assert sdk_run(wasm, manifest, calls) == [b"200 got /a x=None"]
    # The documented difference: Extism connects to the loopback server, omnicore says why not.
    refused = our_run(host, tmp_path, wasm, manifest, calls)[0]
    assert isinstance(refused, errors.Trap)
    assert "not allowed" in str(refused) and "omnicore differs from Extism" in str(refused)
    # Naming the network in the sidecar gives Extism's answer.
    ours = our_run(host, tmp_path, wasm, manifest, calls,
                   sidecar='[grant.http]\nallow_addresses = ["127.0.0.0/8"]\n')
    assert ours == [b"200 got /a x=None"]


def test_an_ipv4_glob_names_its_network_as_in_extism(
        host: PluginHost, tmp_path: Path, pdk_wasm: Path, server: str) -> None:
    wasm = pdk_wasm.read_bytes()
    port = server.rsplit(":", 1)[1]
    calls = [("http", json.dumps({"url": f"{server}/a"}).encode()),
             ("http", json.dumps({"url": f"http://localhost:{port}/a"}).encode())]
    for allowed in (["127.0.0.*"], ["127.*"], ["10.*"]):
        manifest = {"allowed_hosts": allowed}
        ours = our_run(host, tmp_path, wasm, manifest, calls)
        same(ours, sdk_run(wasm, manifest, calls))
        if allowed[0].startswith("127"):
            assert ours[0] == b"200 got /a x=None"
        else:
            assert "is not allowed" in str(ours[0])
        assert "is not allowed" in str(ours[1])  # the name 'localhost' matches no IP glob


def test_glob_hosts_match_subdomains_only(host: PluginHost, tmp_path: Path,
                                         pdk_wasm: Path) -> None:
    # Nothing resolves *.invalid: an allowed host fails resolving, a refused one before that.
    manifest = {"allowed_hosts": ["*.example.invalid", "api-?.other.invalid"]}
    urls = ["http://a.example.invalid/", "https://b.c.example.invalid:8443/",
            "http://api-1.other.invalid/", "http://example.invalid/", "http://x.invalid/",
            "http://api-12.other.invalid/"]
    calls = [("http", json.dumps({"url": u}).encode()) for u in urls]
    ours = our_run(host, tmp_path, pdk_wasm.read_bytes(), manifest, calls)
    allowed = ["is not allowed" not in str(e) for e in ours]
    assert allowed == [True, True, True, False, False, False], ours
    assert all(isinstance(e, errors.Trap) for e in ours)


# -- 3: modules with no Extism imports ---------------------------------------------------------

def test_a_module_with_no_imports_runs_as_under_extism(host: PluginHost, tmp_path: Path) -> None:
    wasm = wat_plugin("bare")
    manifest = {"timeout_ms": 300}
    calls = [("ok", b"in"), ("code", b""), ("crash", b""), ("nope", b""), ("spin", b""),
             ("ok", b""), ("deep", b"")]
    ours = our_run(host, tmp_path, wasm, manifest, calls)
    sdk = sdk_run(wasm, manifest, calls)
    same(ours, sdk)
    assert ours[0] == ours[5] == b""
    # 10: the words of Extism's errors, and the class of each.
    assert str(ours[1]).endswith("Error code: 3") and str(sdk[1]) == "Error code: 3"
    assert isinstance(ours[2], errors.Trap) and "unreachable" in str(ours[2])
    assert isinstance(ours[3], errors.HandlerNotFound)
    assert "Function not found: nope" in str(ours[3]) and str(sdk[3]) == "Function not found: nope"
    assert isinstance(ours[4], errors.DeadlineExceeded) and "timeout" in str(ours[4])
    assert "the Extism manifest's timeout_ms" in str(ours[4])  # the Extism feature involved
    assert "timeout" in str(sdk[4])
    assert isinstance(ours[6], errors.Trap) and "trap: call stack exhausted" in str(ours[6])


def test_inspect_says_which_abi_was_assumed_and_why(tmp_path: Path) -> None:
    for name, reason in [("bare", "no omni_alloc export"), ("kernel", "imports extism:host/env"),
                         ("wasi_command", "no omni_alloc export")]:
        report = PluginModule.inspect(wat_plugin(name))
        assert report["abi"] == "extism" and reason in report["abi_reason"], report
    # Nothing Extism-shaped in the module: an Extism manifest beside it decides.
    odd = tmp_path / "odd.wasm"
    odd.write_bytes(wasmtime.wat2wasm('(module (func (export "f") (param i32)))'))
    assert PluginModule.inspect(odd)["error"].endswith(
        "missing required export 'memory' (a linear memory); see specs/abi.md §1.1")
    (tmp_path / "odd.json").write_text("{}")
    report = PluginModule.inspect(odd)
    assert report["abi"] == "extism" and "odd.json" in report["abi_reason"]
    wasm = tmp_path / "cmd.wasm"
    wasm.write_bytes(wat_plugin("bare"))
    done = subprocess.run([*OMNICORE, "inspect", str(wasm)], capture_output=True, text=True,
                          timeout=120)
    assert "abi         extism (assumed: no omni_alloc export" in done.stdout, done.stdout


def test_a_wasi_command_runs_as_under_extism(host: PluginHost, tmp_path: Path) -> None:
    wasm = wat_plugin("wasi_command")
    calls = [("_start", b""), ("_start", b"")]
    ours = our_run(host, tmp_path, wasm, {}, calls)
    same(ours, sdk_run(wasm, {}, calls, wasi=True))
    assert ours == [b"", b""]


def test_a_loop_in_the_constructor_is_a_timeout(host: PluginHost, tmp_path: Path) -> None:
    # Not run through the SDK: in this run its call never returned (no deadline on the start).
    wasm = wat_plugin("init_loop")
    (tmp_path / "p.wasm").write_bytes(wasm)
    (tmp_path / "p.json").write_text(json.dumps({"timeout_ms": 300}))
    # omnicore starts instances at load: the load fails, saying timeout.
    with pytest.raises(errors.PluginLoadError, match="timeout"):
        host.load(tmp_path / "p.wasm")


# -- 7: the var store ---------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [
    [("set_a", 51), ("set_a", 52), ("set_b", 1), ("set_a", 0), ("set_b", 1)],
    [("set_a", 40), ("set_b", 40), ("set_c", 10), ("set_a", 0), ("set_b", 40)],
    [("set_a", 101), ("set_b", 1), ("set_c", 1), ("set_a", 1)],
    [("set_a", 60), ("set_c", 10), ("set_a", 10), ("set_c", 0), ("set_a", 10)],
])
def test_max_var_bytes_as_extism_counts_it(host: PluginHost, tmp_path: Path,
                                           steps: list[tuple[str, int]]) -> None:
    wasm = wat_plugin("vars")
    manifest = {"memory": {"max_var_bytes": 100}}
    calls = [(fn, b"x" * n) for fn, n in steps]
    ours = our_run(host, tmp_path, wasm, manifest, calls)
    same(ours, sdk_run(wasm, manifest, calls))
    assert any(isinstance(o, Exception) for o in ours)
    for o in ours:
        if isinstance(o, Exception):
            assert "Variable store is full" in str(o) and "max_var_bytes" in str(o)


def test_max_var_bytes_zero_disables_vars(host: PluginHost, tmp_path: Path) -> None:
    wasm = wat_plugin("vars")
    manifest = {"memory": {"max_var_bytes": 0}}
    calls = [("set_a", b"x")]
    ours = our_run(host, tmp_path, wasm, manifest, calls)
    same(ours, sdk_run(wasm, manifest, calls))
    assert "Vars are disabled by this host" in str(ours[0])


def test_max_http_response_bytes_says_exceeds(host: PluginHost, tmp_path: Path,
                                              pdk_wasm: Path, server: str) -> None:
    wasm = pdk_wasm.read_bytes()
    calls = [("http", json.dumps({"url": f"{server}/big"}).encode()),
             ("http", json.dumps({"url": f"{server}/big-chunked"}).encode())]
    for manifest, sidecar in [({"allowed_hosts": ["127.0.0.1"],
                                "memory": {"max_http_response_bytes": 100}}, None),
                              ({"allowed_hosts": ["127.0.0.1"]},
                               "[grant.http]\nmax_response_bytes = 100\n")]:
        ours = our_run(host, tmp_path, wasm, manifest, calls, sidecar)
        for got in ours:  # declared and streamed lengths alike
            assert "HTTP response exceeds the configured maximum number of bytes: 100" in str(got)
        (tmp_path / "p.toml").unlink(missing_ok=True)
    sdk = sdk_run(wasm, {"allowed_hosts": ["127.0.0.1"],
                         "memory": {"max_http_response_bytes": 100}}, calls)
    assert all(isinstance(got, extism.Error) for got in sdk)


# -- 8: Extism's pre-1.0 ABI ------------------------------------------------------------------

def test_the_pre_1_0_env_abi_is_refused_in_one_line(host: PluginHost, tmp_path: Path) -> None:
    wasm = wat_plugin("old_env")
    with pytest.raises(extism.Error):
        extism.Plugin(wasm)  # Extism 1.x refuses it too
    (tmp_path / "old.wasm").write_bytes(wasm)
    with pytest.raises(errors.UnsupportedAbiVersion) as info:
        host.load(tmp_path / "old.wasm")
    msg = str(info.value)
    assert "Extism's pre-1.0" in msg and "env.extism_input_length" in msg
    assert "rebuild it with a current Extism PDK" in msg and "\n" not in msg
    shutil.copy(tmp_path / "old.wasm", tmp_path / "old2.wasm")
    report = PluginModule.inspect(tmp_path / "old2.wasm")
    assert not report["ok"] and "pre-1.0" in report["error"]


def test_a_pdk_that_frees_the_key_itself_still_reads_the_value(host: PluginHost,
                                                              tmp_path: Path) -> None:
    # The Haskell PDK's shape: it frees the key block after config_get returns.
    wasm = wat_plugin("frees_key")
    manifest = {"config": {"greeting": "Howdy"}}
    calls = [("config", b"greeting"), ("config", b"missing"), ("var", b"hello")]
    ours = our_run(host, tmp_path, wasm, manifest, calls)
    same(ours, sdk_run(wasm, manifest, calls))
    assert ours == [b"Howdy", b"", b"hello"]


# -- 9: the kernel's allocator ------------------------------------------------------------------

def test_alloc_heavy_plugins_finish_within_the_default_deadline(host: PluginHost,
                                                               tmp_path: Path) -> None:
    # 100,000 live blocks, and 200,000 blocks mostly freed at once: a first-fit walk on every
    # alloc and a list walk on every free made these take 24 s and 20 s; the default deadline
    # is 1 s. Extism answers `many` at once (its `churn` takes seconds: its free walks).
    wasm = wat_plugin("allocs")
    ours = our_run(host, tmp_path, wasm, {}, [("many", b""), ("churn", b"")])
    assert ours == [(100_000).to_bytes(8, "little"), (200_000).to_bytes(8, "little")]
    assert sdk_run(wasm, {}, [("many", b"")]) == ours[:1]
