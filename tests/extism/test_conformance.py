"""Every case of tests/conformance/extism_cases.json, through omnicore and through the Extism
Python SDK in the same run: outputs and errors must agree, except where the table says
omnicore deliberately differs (and why)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import extism
import pytest

from omnicore import errors
from omnicore.extism import host_fn
from omnicore.plugins.host import PluginHost
from tests.extism.extism_fixtures import wat_plugin

TABLE = json.loads((Path(__file__).parents[1] / "conformance" / "extism_cases.json").read_text())
CASES = TABLE["cases"]


@extism.host_fn(name="shout")
def sdk_shout(text: str) -> str:
    return text.upper() + "!"


@host_fn(name="shout")
def our_shout(text: str) -> str:
    return text.upper() + "!"


def wasm_of(plugin: str, pdk_wasm: Path) -> bytes:
    return pdk_wasm.read_bytes() if plugin == "pdk" else wat_plugin(
        {"kernel": "kernel", "wasi": "wasi_exit"}[plugin])


def expected(text: str) -> bytes | None:
    """'u64:N|...' or literal text; None matches any output ('u64:*')."""
    if "*" in text:
        return None
    if text.startswith("u64:"):
        return b"".join(int(p[4:]).to_bytes(8, "little") for p in text.split("|"))
    return text.encode()


def inputs_of(case: dict[str, Any], server: str) -> list[bytes]:
    return [s.replace("{server}", server).encode() * case.get("input_repeat", 1)
            for s in case.get("inputs", [""])]


def run_sdk(case: dict[str, Any], wasm: bytes, server: str) -> list[bytes | Exception]:
    limits = case.get("limits", {})
    manifest: dict[str, Any] = {"wasm": [{"data": wasm}], "config": case.get("config", {}),
                                **case.get("manifest", {})}
    if "max_pages" in limits:
        manifest["memory"] = {**manifest.get("memory", {}), "max_pages": limits["max_pages"]}
    if "timeout_ms" in limits:
        manifest["timeout_ms"] = limits["timeout_ms"]
    plugin = extism.Plugin(manifest, wasi=case["plugin"] == "wasi", functions=[sdk_shout])
    if case.get("sdk_response_headers"):
        # The SDK's plugin option that makes http_headers answer (omnicore always does).
        from extism.extism import _lib

        _lib.extism_plugin_allow_http_response_headers(plugin.plugin)
    results: list[bytes | Exception] = []
    for data in inputs_of(case, server):
        try:
            results.append(bytes(plugin.call(case["handler"], data)))
        except extism.Error as exc:
            results.append(exc)
    return results


def run_omnicore(case: dict[str, Any], wasm: bytes, server: str, folder: Path
                 ) -> list[bytes | Exception]:
    limits = dict(case.get("limits", {}))
    if "max_pages" in limits:
        limits["max_memory_bytes"] = limits.pop("max_pages") * 65536
    # The case's Extism manifest keys go where an Extism user puts them: NAME.json.
    plugin = folder / "p.wasm"
    plugin.write_bytes(wasm)
    (folder / "p.json").write_text(json.dumps(case.get("manifest", {})))
    with PluginHost() as host:
        host.extism_functions.append(our_shout)
        host.load(plugin, config=case.get("config"), limits=limits)  # config needs no grant
        results: list[bytes | Exception] = []
        for data in inputs_of(case, server):
            try:
                results.append(host.call("p", case["handler"], data))
            except errors.PluginError as exc:
                results.append(exc)
            assert host.get("p").state in ("loaded", "circuit-open", "half-open")
        return results


def check(results: list[bytes | Exception], expect: dict[str, Any], who: str) -> None:
    if "outputs" in expect:
        assert len(results) == len(expect["outputs"])
        for got, want in zip(results, expect["outputs"], strict=True):
            assert not isinstance(got, Exception), f"{who}: {got}"
            if expected(want) is not None:
                assert got == expected(want), who
    else:
        last = results[-1]
        assert isinstance(last, Exception), f"{who} succeeded with {last!r}"
        assert expect["error"] in str(last), f"{who}: {last}"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict[str, Any], pdk_wasm: Path, server: str, tmp_path: Path) -> None:
    wasm = wasm_of(case["plugin"], pdk_wasm)
    ours = run_omnicore(case, wasm, server, tmp_path)
    check(ours, case, "omnicore")
    if "error_type" in case:
        assert type(ours[-1]).__name__ == case["error_type"], ours[-1]
    sdk_expect = {k: v for k, v in case.items() if k in ("outputs", "error")}
    if "extism" in case:
        assert case.get("why"), "a difference from Extism needs its reason"
        sdk_expect = case["extism"]
    check(run_sdk(case, wasm, server), sdk_expect, "extism")


def test_every_kernel_and_host_function_is_exercised() -> None:
    from omnicore.extism._env import ENV_FUNCTIONS
    from omnicore.extism._kernel import KERNEL_FUNCTIONS

    text = (Path(__file__).parent / "plugins" / "kernel.wat").read_text()
    pdk = (Path(__file__).parent / "plugins" / "pdk_plugin.ts").read_text()
    host_only = {"input_set", "output_length", "output_offset", "error_get", "reset",
                 "memory_bytes"}
    for name in set(KERNEL_FUNCTIONS) | set(ENV_FUNCTIONS):
        if name not in host_only:
            assert (f'"extism:host/env" "{name}"' in text
                    or f'@external("extism:host/env", "{name}")' in pdk), name
