"""The export componentize-py builds a plugin around (``omnicore:plugin/handler``).

Only imported inside a build: ``wit_world`` and ``componentize_py_types`` are the bindings
componentize-py generates for the plugin's world.
"""

from __future__ import annotations

import traceback

from componentize_py_types import Err  # type: ignore[import-not-found]
from wit_world import exports  # type: ignore[import-not-found]

from omnicore_plugin._handlers import dispatch

__all__ = ["Handler"]


class Handler(exports.Handler):  # type: ignore[misc]
    """``call(handler, input)``: the handler's output, or its failure as ``err``."""

    def call(self, handler: str, input: bytes) -> bytes:
        try:
            return dispatch(handler, input)
        except Exception as exc:  # the call fails; the plugin keeps serving
            last = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
            raise Err(f"{type(exc).__name__}: {exc}{where}") from None
