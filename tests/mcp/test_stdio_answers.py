"""The stdio server's own answers (omnicore.mcp.stdio): a request answered without the SDK's
loop is answered even when answering it fails (a bug of ours), with JSON-RPC's internal
error naming the request, and the next request is answered as usual."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from omnicore.mcp.stdio import INTERNAL_ERROR, _Lines


class _Tools:
    """A ToolServer's ``direct`` whose first answer fails."""

    def __init__(self) -> None:
        self.calls = 0

    def direct(self, message: Any, session: str, caller: object
               ) -> Callable[[], Awaitable[bytes]] | None:
        async def answer() -> bytes:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("a bug")
            return json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": {}}).encode()
        return answer


class _Out:
    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.got = asyncio.Event()

    def line(self, data: bytes) -> None:
        self.lines.append(data)
        if len(self.lines) == 2:
            self.got.set()


def test_a_failed_direct_answer_is_an_internal_error_and_serving_goes_on() -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        for i in (7, 8):
            reader.feed_data(json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/list"})
                             .encode() + b"\n")
        reader.feed_eof()
        out, tasks = _Out(), set[asyncio.Task[None]]()
        lines = _Lines(reader, _Tools(), out, tasks)  # type: ignore[arg-type]
        assert [line async for line in lines] == []  # both answered here, none to the SDK
        await asyncio.wait_for(out.got.wait(), 30)
        first, second = (json.loads(line) for line in out.lines)
        assert first["id"] == 7 and first["error"]["code"] == INTERNAL_ERROR
        assert second == {"jsonrpc": "2.0", "id": 8, "result": {}}
        assert not tasks

    asyncio.run(main())
