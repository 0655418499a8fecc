"""The console's JSON answers, written by orjson (:mod:`omnicore.core.jsoncodec`).

The same bytes as Starlette's ``JSONResponse`` for everything it writes (compact, UTF-8),
except two: a float may be spelled differently (``1e16`` for ``1e+16``, the same number), and
NaN or ±Infinity is written as ``null`` where Starlette failed the request with a 500. What
orjson would write its own way (a key that is not a string, an integer beyond 64 bits, a
subclass of a built-in type) is handed to Starlette's own rendering.
"""

from __future__ import annotations

from typing import Any

from starlette import responses

from omnicore.core import jsoncodec

__all__ = ["JSONResponse"]


class JSONResponse(responses.JSONResponse):
    """``starlette.responses.JSONResponse``, rendered through orjson."""

    def render(self, content: Any) -> bytes:
        return jsoncodec.dumps(content, fallback=super().render)
