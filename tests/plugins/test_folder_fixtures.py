"""Every fixture of the sandbox suite dropped into one plugin folder: each lands in the state
it should, every call fails with a typed error or succeeds, and the healthy plugin keeps
answering after each one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import wasmtime

from omnicore.errors import PluginCallError, PluginError
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import Limits
from tests.host_fixtures import FIXTURES, echo_wasm, write

LOADED = {"echo", "grow_bomb", "keeps_state", "loop", "outputs", "recursion", "unreachable",
          "wasi"}
NEEDS_GRANT = {"bad_pointers", "config", "ungranted"}
FAILED = {"bad_alloc_type", "foreign_import", "future", "init_trap", "no_alloc", "no_memory",
          "unknown_function", "unknown_namespace", "wrong_import_type", "wrong_signature",
          "truncated", "random", "empty"}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginHost]:
    folder = tmp_path_factory.mktemp("plugins")
    for wat in sorted(FIXTURES.glob("*.wat")):
        if not wat.stem.startswith("host_"):
            write(folder, f"{wat.stem}.wasm", wasmtime.wat2wasm(wat.read_text()))
    write(folder, "healthy.wasm", echo_wasm("healthy"))
    write(folder, "truncated.wasm", echo_wasm("truncated")[:200])
    write(folder, "random.wasm", os.urandom(4096))
    write(folder, "empty.wasm", b"")
    h = PluginHost(defaults=Limits(timeout_ms=200, max_memory_bytes=8 * 2**20))
    h.watch_folder(folder, watch=False)
    yield h
    h.close()


def test_every_file_lands_in_its_state(host: PluginHost) -> None:
    states = {p.name: p.state for p in host}
    assert {n for n, s in states.items() if s == "loaded"} == LOADED | {"healthy"}
    assert {n for n, s in states.items() if s == "needs-grant"} == NEEDS_GRANT
    assert {n for n, s in states.items() if s == "failed"} == FAILED
    for name in FAILED:
        assert host.get(name).last_error, name
    assert "ABI 2" in (host.get("future").last_error or "")


@pytest.mark.parametrize("name", sorted(LOADED | NEEDS_GRANT))
def test_every_handler_fails_typed_and_the_host_keeps_serving(host: PluginHost,
                                                             name: str) -> None:
    if name in NEEDS_GRANT:
        assert host.grant(name, "config").state == "loaded"
    for handler in host.get(name).handlers:
        try:
            host.call(name, handler, b'{"x": 1}')
        except PluginCallError as exc:
            assert exc.plugin == name and exc.handler == handler
        except PluginError as exc:  # e.g. HandlerNotFound would be a bug in the fixture list
            pytest.fail(f"{name}.{handler}: {type(exc).__name__}: {exc}")
        assert host.call("healthy", "echo", b"still here") == b"still here"
