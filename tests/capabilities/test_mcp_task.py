"""``omnicore:mcp`` in an MCP task's job (omnicore.capabilities.mcp_task): the rounds a task's
row keeps, and the client that answers from them (through a real host:
tests/mcp/test_tasks_asking.py)."""

from __future__ import annotations

import pytest

from omnicore.capabilities.mcp import ClientRefused
from omnicore.capabilities.mcp_task import TaskClient, TaskRounds
from tests.capabilities.test_mcp import ELICIT

ACCEPT = {"action": "accept", "content": {"name": "Ada"}}


def test_the_rounds_of_a_task_survive_their_row_and_only_open_questions_show() -> None:
    rounds = TaskRounds(["elicitation"], {"n": 1}, asked={"a": {}, "b": {}},
                        answers={"a": ACCEPT})
    again = TaskRounds.load(rounds.dump())
    assert again == rounds and list(again.open) == ["b"]
    assert TaskRounds.load(None) is None and TaskRounds.load(b"not json") is None


def test_a_task_client_answers_from_its_rounds_and_records_the_rest() -> None:
    client = TaskClient(TaskRounds(["elicitation"], {}, answers={"known": ACCEPT}))
    assert client.progress(1, 2, "x") is False
    assert client.ask("elicitation/create", ELICIT["params"], 0, "known") == ACCEPT
    with pytest.raises(ClientRefused, match="waiting"):
        client.ask("elicitation/create", ELICIT["params"], 0, "unknown")
    assert list(client.pending) == ["unknown"]
    with pytest.raises(ClientRefused, match="sampling"):
        client.ask("sampling/createMessage", {"messages": [], "maxTokens": 1}, 0)
    with pytest.raises(ClientRefused, match="cannot be asked"):
        TaskClient(None).ask("elicitation/create", ELICIT["params"], 0)
