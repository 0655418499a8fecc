"""The MCP client of one tool call, as the ``omnicore:mcp`` host functions reach it
(omnicore.capabilities.mcp): progress and questions from the plugin's worker thread, sent on
the serving event loop over the call's own stream, each bounded by the call's deadline. On
2026-07-28 a question is not sent: it is answered from the request's ``inputResponses`` (and
the earlier rounds' ``requestState``), or recorded for an ``input_required`` result
(omnicore.mcp.rounds).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Mapping
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from pydantic import ValidationError

from omnicore.capabilities.mcp import ClientRefused, answer_of, pend, question

__all__ = ["CallClient"]

class CallClient:
    """The client of the tool call ``ctx`` served on ``loop`` (implements
    :class:`omnicore.capabilities.mcp.Client`); ``progress``: the call carried a
    ``_meta.progressToken``; ``answers``: on 2026-07-28, the client's answers so far by
    question key (the call's questions are then answered from them or recorded in
    :attr:`pending`, never sent)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ctx: ServerRequestContext[Any, Any],
                 progress: bool, answers: dict[str, Any] | None = None, *,
                 escalate: bool = False) -> None:
        self._loop = loop
        self._ctx = ctx
        self._progress = progress
        #: Whether the plugin reported progress itself (then the server adds none).
        self.reported = False
        #: The client capability a question needed and the client had not declared (on
        #: 2026-07-28 the call is then refused with -32021).
        self.missing: str | None = None
        self.answers = answers
        #: 2026-07-28: the questions the answers did not cover, by key (an input_required
        #: result when any); :attr:`used`: the answers this round read.
        self.pending: dict[str, dict[str, Any]] = {}
        self.used: dict[str, Any] = {}
        #: ``escalate``: the call stops at its first answered question, which
        #: :attr:`escalated` then says (a tool that asks first, then runs as a task).
        self.escalate = escalate
        self.escalated = False
        self._asked = 0

    def _wait(self, coro: Any, deadline: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def progress(self, progress: float, total: float | None, message: str | None) -> bool:
        if not self._progress:
            return False
        self.reported = True
        try:
            # Waited for, so the notifications leave in the order the plugin sent them.
            self._wait(self._ctx.session.report_progress(progress, total, message),
                       time.monotonic() + 1.0)
        except (concurrent.futures.TimeoutError, RuntimeError):
            return False  # the loop is stopping, or the stream is gone
        return True

    def ask(self, method: str, params: Mapping[str, Any], deadline: float,
            key: str | None = None) -> dict[str, Any]:
        self._asked += 1
        key = key or f"{method.partition('/')[0]}-{self._asked}"
        capability, request, result_type = question(method, params)
        declared = self._ctx.session.client_capabilities
        if declared is None or getattr(declared, capability, None) is None:
            self.missing = capability
            raise ClientRefused("UNAVAILABLE", f"the MCP client did not declare the "
                                               f"'{capability}' capability")
        if self.answers is not None:
            return self._answered(key, request, result_type)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClientRefused("UNAVAILABLE", "the call's deadline passed before asking")
        send = self._ctx.session.send_request(
            request, result_type, request_read_timeout_seconds=remaining,
            metadata=ServerMessageMetadata(related_request_id=self._ctx.request_id))
        try:
            result = self._wait(send, deadline)
        except (concurrent.futures.TimeoutError, TimeoutError):
            raise ClientRefused("UNAVAILABLE", f"the client did not answer {method} within the "
                                               "call's deadline") from None
        except MCPError as exc:
            error = exc.error
            raise ClientRefused("INVALID", f"the client answered {method} with error "
                                           f"{error.code}: {error.message[:300]}") from None
        except ValidationError:
            raise ClientRefused("INVALID", f"the client's answer to {method} is not MCP's "
                                           "result") from None
        except Exception as exc:  # no back-channel, the stream closed: nothing to answer on
            raise ClientRefused("UNAVAILABLE", f"the client cannot be asked now: "
                                               f"{type(exc).__name__}: {exc}"[:300]) from None
        dumped: dict[str, Any] = result.model_dump(by_alias=True, mode="json",
                                                   exclude_none=True)
        return dumped

    def _answered(self, key: str, request: Any, result_type: type[Any]) -> dict[str, Any]:
        """2026-07-28: the client's answer to question ``key``, or the question recorded
        and the plugin told to stop (an answer that is not the method's result is asked
        again)."""
        dumped = answer_of(self.answers.get(key) if self.answers is not None else None,
                           result_type)
        if dumped is not None:
            self.used[key] = dumped
            if self.escalate:
                # The call's questions came first (the tool asks before it works): answered,
                # it goes on as a task that has the answers (omnicore.mcp.tasks).
                self.escalated = True
                raise ClientRefused("UNAVAILABLE", "answered: the call goes on as a task")
            return dumped
        raise pend(self.pending, key, request, "the call is answered input_required and retried")
