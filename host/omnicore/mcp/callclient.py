"""The MCP client of one tool call, as the ``omnicore:mcp`` host functions reach it
(omnicore.capabilities.mcp): progress and questions from the plugin's worker thread, sent on
the serving event loop over the call's own stream, each bounded by the call's deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Mapping
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from pydantic import TypeAdapter, ValidationError

from omnicore.capabilities.mcp import ClientRefused

__all__ = ["CallClient"]

#: What the client must have declared at its handshake to be asked, by method.
_NEEDS: dict[str, tuple[str, type[Any]]] = {
    "elicitation/create": ("elicitation", types.ElicitResult),
    "sampling/createMessage": ("sampling", types.CreateMessageResult)}
_REQUEST: TypeAdapter[Any] = TypeAdapter(types.ServerRequest)


class CallClient:
    """The client of the tool call ``ctx`` served on ``loop`` (implements
    :class:`omnicore.capabilities.mcp.Client`); ``progress``: the call carried a
    ``_meta.progressToken``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ctx: ServerRequestContext[Any, Any],
                 progress: bool) -> None:
        self._loop = loop
        self._ctx = ctx
        self._progress = progress
        #: Whether the plugin reported progress itself (then the server adds none).
        self.reported = False
        #: The client capability a question needed and the client had not declared (on
        #: 2026-07-28 the call is then refused with -32021).
        self.missing: str | None = None

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

    def ask(self, method: str, params: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        capability, result_type = _NEEDS[method]
        try:
            request = _REQUEST.validate_python({"method": method, "params": dict(params)},
                                               by_name=False)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"][2:]) or "params"
            raise ClientRefused("INVALID", f"{method}: {where}: {first['msg']}") from None
        declared = self._ctx.session.client_capabilities
        if declared is None or getattr(declared, capability, None) is None:
            self.missing = capability
            raise ClientRefused("UNAVAILABLE", f"the MCP client did not declare the "
                                               f"'{capability}' capability")
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
