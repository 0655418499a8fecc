"""The signed ``requestState`` of 2026-07-28's multi-round requests (omnicore.mcp.rounds)."""

from __future__ import annotations

import pytest
from mcp.shared.exceptions import MCPError

from omnicore.mcp import rounds
from omnicore.mcp.rounds import open_state, seal_state

ANSWERS = {"user_name": {"action": "accept", "content": {"name": "Ada"}}}


def test_a_sealed_state_opens_to_its_answers() -> None:
    state = seal_state(ANSWERS, "ada", "tool:greet", {"n": 1})
    assert open_state(state, "ada", "tool:greet", {"n": 1}) == ANSWERS


@pytest.mark.parametrize("state", ["", "garbage", "ü.ü", "!!!.???"])
def test_garbage_is_refused_with_invalid_params(state: str) -> None:
    with pytest.raises(MCPError) as refused:
        open_state(state, "ada", "tool:greet", {})
    assert refused.value.error.code == -32602
    assert "\n" not in refused.value.error.message


def test_an_altered_state_is_refused() -> None:
    state = seal_state(ANSWERS, "ada", "tool:greet", {})
    with pytest.raises(MCPError, match="integrity"):
        open_state(state + "-TAMPERED", "ada", "tool:greet", {})


@pytest.mark.parametrize(("caller", "name", "arguments"), [
    ("bob", "tool:greet", {}), ("ada", "tool:other", {}), ("ada", "prompt:greet", {}),
    ("ada", "tool:greet", {"n": 2})])
def test_another_calls_state_is_refused(caller: str, name: str, arguments: object) -> None:
    state = seal_state(ANSWERS, "ada", "tool:greet", {})
    with pytest.raises(MCPError, match="another call"):
        open_state(state, caller, name, arguments)


def test_an_old_state_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    state = seal_state(ANSWERS, "ada", "tool:greet", {})
    monkeypatch.setattr(rounds, "STATE_TTL_S", -1)
    with pytest.raises(MCPError, match="expired"):
        open_state(state, "ada", "tool:greet", {})
