from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.plugins.host import PluginHost
from tests.extism.extism_fixtures import pdk_plugin
from tests.extism.extism_loopback import loopback_server


@pytest.fixture(scope="session")
def pdk_wasm() -> Path:
    return pdk_plugin()


@pytest.fixture
def host() -> Iterator[PluginHost]:
    with PluginHost() as h:
        yield h


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    """A loopback HTTP server's base URL (tests/extism/loopback.py)."""
    with loopback_server() as loop:
        yield loop.url
