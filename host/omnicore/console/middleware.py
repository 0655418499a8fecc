"""The base of the console's ASGI middleware: each one acts on HTTP requests only."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HttpMiddleware"]


@dataclass(eq=False)
class HttpMiddleware:
    """ASGI middleware around ``app`` that sees HTTP requests in :meth:`http`; every other
    scope (lifespan, websocket) goes straight through to ``app``."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one HTTP request (at last by passing it on to ``self.app``)."""
        raise NotImplementedError
