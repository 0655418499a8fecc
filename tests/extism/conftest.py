from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from extism_fixtures import pdk_plugin

from omnicore.plugins.host import PluginHost


@pytest.fixture(scope="session")
def pdk_wasm() -> Path:
    return pdk_plugin()


@pytest.fixture
def host() -> Iterator[PluginHost]:
    with PluginHost() as h:
        yield h
