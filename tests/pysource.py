"""Parse Python source in tests that read the package's own code (layering, storage boundary)."""

from __future__ import annotations

import ast


def parse(source: str) -> ast.Module:
    """``ast.parse``, retried when CPython 3.11 trips over another thread.

    CPython 3.11 keeps the AST converter's recursion counter in interpreter-wide state
    (python/cpython#106905, fixed in 3.12), and 3.11's traceback formatting calls
    ``ast.parse`` to place its ``^^^`` marks. So a daemon thread of an earlier test that logs
    an exception while this thread parses makes ``ast.parse`` fail with "AST constructor
    recursion depth mismatch", though the source is fine. A second parse is unaffected.
    """
    for _ in range(4):
        try:
            return ast.parse(source)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc):
                raise
            last = exc
    raise last
