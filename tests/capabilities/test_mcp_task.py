"""``omnicore:mcp`` in an MCP task's job (omnicore.capabilities.mcp_task): the rounds a task's
row keeps, and the client that answers from them (through a real host:
tests/mcp/test_tasks_asking.py)."""

from __future__ import annotations

import pytest

from omnicore.capabilities.mcp import MAX_OPEN_QUESTIONS, ClientRefused
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


def test_a_task_asking_in_a_loop_under_new_keys_is_stopped_at_the_bound() -> None:
    # A hostile plugin may ask again and again, each time under a new key, until its deadline:
    # the task's row (and tasks/get) would keep every 64 KiB question. Past the bound it is
    # refused (QUOTA) and nothing more is recorded; asking an open question again still works.
    client = TaskClient(TaskRounds(["elicitation"], {}))
    for i in range(MAX_OPEN_QUESTIONS):
        with pytest.raises(ClientRefused, match="waiting") as waiting:
            client.ask("elicitation/create", ELICIT["params"], 0, f"q{i}")
        assert waiting.value.status == "UNAVAILABLE"
    with pytest.raises(ClientRefused, match=f"at most {MAX_OPEN_QUESTIONS}") as refused:
        client.ask("elicitation/create", ELICIT["params"], 0, "one-more")
    assert refused.value.status == "QUOTA"
    assert len(client.pending) == MAX_OPEN_QUESTIONS and "one-more" not in client.pending
    with pytest.raises(ClientRefused, match="waiting"):
        client.ask("elicitation/create", ELICIT["params"], 0, "q0")
