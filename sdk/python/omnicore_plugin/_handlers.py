"""Handlers: the functions the host calls by name, and the dispatch it calls them through."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar, overload

__all__ = ["dispatch", "handler", "handlers", "json_handler"]

F = TypeVar("F", bound=Callable[..., Any])
_HANDLERS: dict[str, Callable[[bytes], bytes]] = {}


def _output(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"a handler returns bytes, str or None, got {type(value).__name__} "
                    "(use @json_handler to send JSON)")


def _register(name: str, call: Callable[[bytes], bytes]) -> None:
    if name in _HANDLERS:
        raise ValueError(f"handler {name!r} is defined twice")
    _HANDLERS[name] = call


@overload
def handler(fn: F) -> F: ...
@overload
def handler(fn: None = None, *, name: str | None = None, title: str | None = None,
            description: str | None = None, destructive: bool = False,
            long_running: bool = False) -> Callable[[F], F]: ...


def handler(fn: Any = None, *, name: str | None = None, title: str | None = None,
            description: str | None = None, destructive: bool = False,
            long_running: bool = False) -> Any:
    """Make ``fn(input: bytes) -> bytes | str | None`` the handler ``name`` (default: the
    function's name). Use bare (``@handler``) or with a name (``@handler(name="greet")``).

    What an AI agent is told of the handler is read by ``omnicore build`` from the source,
    without running it: the docstring (or ``description``) describes it, ``title`` names it,
    ``destructive=True`` says it deletes or overwrites data, ``long_running=True`` that every
    call of it as an MCP tool runs as a durable job (a task); :func:`json_handler`'s
    annotations give its schemas."""
    def register(f: F) -> F:
        _register(name or f.__name__, lambda data: _output(f(data)))
        return f

    return register(fn) if fn is not None else register


@overload
def json_handler(fn: F) -> F: ...
@overload
def json_handler(fn: None = None, *, name: str | None = None, title: str | None = None,
                 description: str | None = None, destructive: bool = False,
                 long_running: bool = False) -> Callable[[F], F]: ...


def json_handler(fn: Any = None, *, name: str | None = None, title: str | None = None,
                 description: str | None = None, destructive: bool = False,
                 long_running: bool = False) -> Any:
    """Like :func:`handler`, with the input parsed as JSON (empty input: None) and the
    return value sent as JSON. The annotation of its parameter (a ``TypedDict`` or a
    dataclass of the plugin's own) is its input schema, its return annotation its output
    schema (sdk/python/README.md, "Describing handlers")."""
    def register(f: F) -> F:
        def call(data: bytes) -> bytes:
            arg = json.loads(data) if data.strip() else None
            return json.dumps(f(arg), separators=(",", ":"), ensure_ascii=False).encode()

        _register(name or f.__name__, call)
        return f

    return register(fn) if fn is not None else register


def handlers() -> list[str]:
    """The names of the handlers defined so far."""
    return list(_HANDLERS)


def dispatch(name: str, data: bytes) -> bytes:
    """Run handler ``name`` on ``data`` (KeyError if there is none)."""
    try:
        call = _HANDLERS[name]
    except KeyError:
        raise KeyError(f"no handler {name!r}; handlers: {', '.join(_HANDLERS)}") from None
    return call(bytes(data))
