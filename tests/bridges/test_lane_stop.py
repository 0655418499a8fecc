"""A bridge's lanes stop when the host stops, whatever the broker's client does with the
cancellation (specs/host.md, Bridges).

nats-py connects through ``asyncio.wait_for``, which on Python 3.11 raises what its awaitable
raised when the cancellation came at the moment it failed: a lane cancelled as its connect
was refused saw ``ConnectionRefusedError``, not ``CancelledError``, retried with backoff for
ever, and the host's stop waited on it (a clean-clone CI run hung 900 s in ``omnicore
workflows approve --wait`` of the demo, whose NATS bridge has no server). The client here
loses the cancellation the same way, deterministically: its connect waits until cancelled,
then raises a refused connection. A client may also swallow it and return as if connected
(no error for the lane to look at): the lane looks at its task before each turn too.
"""

from __future__ import annotations

import asyncio

import pytest

from omnicore.bridges._loop import Bridge
from omnicore.config.bridges import BridgeConfig, BridgeInbound, BridgeOutbound


class LosesCancel:
    """A broker whose connect turns the cancellation into a refused connection (``swallow``:
    returns as if connected, then every fetch answers nothing at once)."""

    def __init__(self, connecting: asyncio.Event, swallow: bool = False) -> None:
        self._connecting = connecting
        self._swallow = swallow
        self.connects = 0
        self.fetches = 0

    async def connect(self, lane: str) -> None:
        self.connects += 1
        self._connecting.set()
        try:
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError:
            if self._swallow:
                return
            raise ConnectionRefusedError(111, "Connect call failed") from None

    async def close(self) -> None:
        pass

    async def fetch(self, route: BridgeInbound, limit: int, wait_s: float) -> list[object]:
        assert self._swallow, "never connected"
        self.fetches += 1
        if self.fetches > 10_000:  # the lane went on: stop it here, so the test can fail
            raise asyncio.CancelledError
        await asyncio.sleep(0)
        return []

    async def ack(self, route: BridgeInbound, message: object) -> None:
        raise AssertionError("never connected")

    async def publish(self, route: BridgeOutbound, message_id: str, event: str, data: bytes,
                      headers: object = None) -> str:
        raise AssertionError("never connected")


@pytest.mark.parametrize("swallow", [False, True], ids=["raises", "returns"])
def test_a_lane_whose_client_loses_the_cancellation_still_stops(swallow: bool) -> None:
    config = BridgeConfig.model_validate({
        "kind": "nats", "url": "nats://127.0.0.1:4222",
        "inbound": [{"subject": "orders.>", "stream": "ORDERS", "event": "orders.created"}]})

    async def main() -> tuple[bool, int, str, int]:
        connecting = asyncio.Event()
        broker = LosesCancel(connecting, swallow)
        bridge = Bridge("orders", config, lambda: broker, lambda event: 0)  # type: ignore[arg-type,return-value]
        run = asyncio.create_task(bridge.run())
        await asyncio.wait_for(connecting.wait(), 30)
        run.cancel()
        done, _ = await asyncio.wait({run}, timeout=30)
        return run in done and run.cancelled(), broker.connects, bridge.state, broker.fetches

    # Not asyncio.run: its clean-up would wait for a lane that never stops.
    loop = asyncio.new_event_loop()
    try:
        stopped, connects, state, fetches = loop.run_until_complete(main())
    finally:
        loop.close()
    if not stopped:
        pytest.fail(f"the lane retried {connects} times and never stopped", pytrace=False)
    assert connects == 1 and state == "stopped"
    assert fetches == 0, f"the lane fetched {fetches} times after its stop was asked"
