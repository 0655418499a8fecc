"""One plugin-name rule for every language's scaffold (toolchains/__init__.py)."""

from __future__ import annotations

import pytest

from omnicore.errors import BuildError
from omnicore.toolchains import check_plugin_name


@pytest.mark.parametrize("name", ["a", "hello-go", "x_1", "9lives", "a" * 63])
def test_a_manifest_name_is_a_plugin_name(name: str) -> None:
    check_plugin_name(name)


@pytest.mark.parametrize("name", ["", "Bad Name", "-x", "_x", "a" * 64, "ünï"])
def test_anything_else_is_refused_with_the_rule(name: str) -> None:
    with pytest.raises(BuildError, match=r"invalid plugin name .*at most 63 characters"):
        check_plugin_name(name)
