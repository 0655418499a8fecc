"""The signed ``requestState`` of 2026-07-28's multi-round requests (omnicore.mcp.rounds),
its key kept in the app's database (real SQLite files)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from omnicore.mcp import rounds
from omnicore.mcp.callclient import CallClient
from omnicore.mcp.rounds import Rounds, StateKey, open_state, seal_state
from omnicore.storage import open_storage

ANSWERS = {"user_name": {"action": "accept", "content": {"name": "Ada"}}}
KEY = b"k" * 32


def test_a_sealed_state_opens_to_its_answers() -> None:
    state = seal_state(KEY, ANSWERS, "ada", "tool:greet", {"n": 1})
    assert open_state(KEY, state, "ada", "tool:greet", {"n": 1}) == ANSWERS


@pytest.mark.parametrize("state", ["", "garbage", "ü.ü", "!!!.???"])
def test_garbage_is_refused_with_invalid_params(state: str) -> None:
    with pytest.raises(MCPError) as refused:
        open_state(KEY, state, "ada", "tool:greet", {})
    assert refused.value.error.code == -32602
    assert "\n" not in refused.value.error.message


def test_an_altered_state_is_refused() -> None:
    state = seal_state(KEY, ANSWERS, "ada", "tool:greet", {})
    with pytest.raises(MCPError, match="integrity"):
        open_state(KEY, state + "-TAMPERED", "ada", "tool:greet", {})


@pytest.mark.parametrize(("caller", "name", "arguments"), [
    ("bob", "tool:greet", {}), ("ada", "tool:other", {}), ("ada", "prompt:greet", {}),
    ("ada", "tool:greet", {"n": 2})])
def test_another_calls_state_is_refused(caller: str, name: str, arguments: object) -> None:
    state = seal_state(KEY, ANSWERS, "ada", "tool:greet", {})
    with pytest.raises(MCPError, match="another call"):
        open_state(KEY, state, caller, name, arguments)


def test_an_old_state_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    state = seal_state(KEY, ANSWERS, "ada", "tool:greet", {})
    monkeypatch.setattr(rounds, "STATE_TTL_S", -1)
    with pytest.raises(MCPError, match="expired"):
        open_state(KEY, state, "ada", "tool:greet", {})


def _round_trip(signer: Rounds, checker: Rounds) -> dict[str, object]:
    """A request answered input_required by ``signer``'s host, retried at ``checker``'s."""
    asked = types.CallToolRequestParams(name="greet", arguments={"n": 1})
    client = CallClient.__new__(CallClient)  # only what input_required reads of it
    client.answers, client.used = {}, ANSWERS
    client.pending = {"color": {"method": "elicitation/create", "params": {
        "message": "Color?", "requestedSchema": {"type": "object"}}}}

    async def main() -> dict[str, object]:
        result = await signer.input_required(client, asked, "ada", "tool")
        retried = asked.model_copy(update={"request_state": result.request_state})
        return await checker.answers(retried, "ada", "tool")
    return asyncio.run(main())


def test_a_state_signed_by_one_host_is_good_at_another_of_the_same_database(
        tmp_path: Path) -> None:
    one, two = open_storage(tmp_path / "shared"), open_storage(tmp_path / "shared")
    other = open_storage(tmp_path / "other")
    try:
        first = Rounds(StateKey(lambda: one.mcp_tasks))
        second = Rounds(StateKey(lambda: two.mcp_tasks))
        assert _round_trip(first, second) == ANSWERS
        assert _round_trip(second, first) == ANSWERS
        # Another app's database has a key of its own: its state is refused here.
        with pytest.raises(MCPError, match="integrity"):
            _round_trip(Rounds(StateKey(lambda: other.mcp_tasks)), first)
        # A tampered state is refused wherever it comes back.
        state = seal_state(asyncio.run(first.key.get()), ANSWERS, "ada", "tool:greet", {})
        with pytest.raises(MCPError, match="integrity"):
            open_state(asyncio.run(second.key.get()), state[:-2] + "AA", "ada", "tool:greet",
                       {})
    finally:
        for storage in (one, two, other):
            storage.close()


def test_hosts_making_the_key_at_once_agree_on_one(tmp_path: Path) -> None:
    hosts = [open_storage(tmp_path) for _ in range(4)]
    keys: list[bytes] = []
    start = threading.Barrier(len(hosts))

    def make(i: int) -> None:
        start.wait()
        keys.append(hosts[i].mcp_tasks.secret("mcp.request-state", bytes([i]) * 32))
    threads = [threading.Thread(target=make, args=(i,)) for i in range(len(hosts))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(keys) == len(hosts) and len(set(keys)) == 1
        assert hosts[0].mcp_tasks.get("secret:mcp.request-state") is not None
    finally:
        for storage in hosts:
            storage.close()
