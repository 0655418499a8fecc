"""A private registry per test module (tests/registryserver.py), plugin modules made here
(no toolchain), and signing keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import wasmtime

from omnicore.oci import signing
from omnicore.sandbox import wasmbin
from tests.registryserver import Registry


def make_module(name: str = "greeter", version: str = "1.2.0", pad: int = 0) -> bytes:
    """A valid core module with an omnicore.manifest section (and ``pad`` bytes of a custom
    section, for size)."""
    wasm = bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1))'))
    wasm = wasmbin.set_custom_section(
        wasm, "omnicore.manifest",
        f'{{"name": "{name}", "version": "{version}"}}'.encode())
    if pad:
        wasm = wasmbin.set_custom_section(wasm, "padding", bytes(range(256)) * (pad // 256))
    return wasm


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    server = Registry.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def module() -> bytes:
    return make_module()


@pytest.fixture(scope="module")
def keypair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM)."""
    return signing.generate_key()


@pytest.fixture(scope="module")
def other_keypair() -> tuple[bytes, bytes]:
    return signing.generate_key()
