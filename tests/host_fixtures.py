"""Builders for the host tests' plugins (WAT fixtures compiled with wasmtime.wat2wasm)."""

from __future__ import annotations

from pathlib import Path

import wasmtime

FIXTURES = Path(__file__).parent / "fixtures"


def echo_wasm(name: str = "echo", version: str = "1.0.0") -> bytes:
    """The host_echo fixture named ``name`` whose ``version`` handler answers ``version``."""
    src = (FIXTURES / "host_echo.wat").read_text()
    src = src.replace("NAME_TAG", name).replace("VERSION_LEN", str(len(version)))
    return wasmtime.wat2wasm(src.replace("VERSION_TAG", version))


def config_wasm(name: str = "conf") -> bytes:
    """A plugin importing omnicore:config whose ``get`` answers the value at the input key."""
    src = (FIXTURES / "host_config.wat").read_text().replace("NAME_TAG", name)
    return wasmtime.wat2wasm(src)


def write(folder: Path, filename: str, data: bytes) -> Path:
    """Write a plugin file the way a deploy script would: in place, in one go."""
    path = folder / filename
    path.write_bytes(data)
    return path
