"""Structured logging that carries the runtime id and the module/plugin context.

Every logger handed out by :func:`get_logger` is a :class:`BoundLogger`: a thin
``logging.LoggerAdapter`` whose context (``runtime_id``, ``module``, ``plugin``...) travels
with each record as ``record.omni``. :func:`configure` installs one handler on the
``omnicore`` logger that renders that context as ``key=value`` text or as one JSON object
per line. The library never configures logging by itself; ``omnicore run`` does.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal, TextIO

__all__ = ["BoundLogger", "JsonFormatter", "TextFormatter", "configure", "get_logger",
           "set_level"]

LogFormat = Literal["text", "json"]
_ROOT = "omnicore"
_HANDLER_MARK = "_omnicore_handler"


class BoundLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger with fixed context; ``bind(**more)`` returns a child with more context."""

    def __init__(self, logger: logging.Logger, context: Mapping[str, Any]) -> None:
        super().__init__(logger, dict(context))

    @property
    def context(self) -> dict[str, Any]:
        """The context every record of this logger carries."""
        return dict(self.extra or {})

    def bind(self, **context: Any) -> BoundLogger:
        """Return a logger with this one's context plus ``context``."""
        return BoundLogger(self.logger, {**(self.extra or {}), **context})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = kwargs.get("extra") or {}
        # Call-site extras win over bound context, and both land under one attribute so the
        # formatters know exactly which fields are context.
        kwargs["extra"] = {"omni": {**(self.extra or {}), **extra}}
        return msg, kwargs


def get_logger(name: str, **context: Any) -> BoundLogger:
    """Return a :class:`BoundLogger` for ``name`` (prefixed with ``omnicore.`` if needed)."""
    if name != _ROOT and not name.startswith(_ROOT + "."):
        name = f"{_ROOT}.{name}"
    return BoundLogger(logging.getLogger(name), context)


def _context(record: logging.LogRecord) -> dict[str, Any]:
    ctx = getattr(record, "omni", None)
    return dict(ctx) if isinstance(ctx, dict) else {}


class TextFormatter(logging.Formatter):
    """``2026-01-01T00:00:00Z INFO omnicore.app message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ctx = " ".join(f"{k}={v}" for k, v in _context(record).items() if v is not None)
        line = f"{stamp}Z {record.levelname:<7} {record.name}: {record.getMessage()}"
        if ctx:
            line = f"{line}  [{ctx}]"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the context fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _context(record).items():
            doc.setdefault(key, value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(level: str = "info", fmt: LogFormat = "text", stream: TextIO | None = None,
              *, source: str | None = None) -> None:
    """Send ``omnicore.*`` records at ``level`` or above to ``stream`` (stderr) as ``fmt``.

    ``source`` is where ``fmt`` came from (``OmniConfig.source_of("log.format")``): json that
    only a default or an adapter chose (adapters pick it for containers, for log collectors)
    gives way to text when the stream is a terminal, where a person reads it. Calling it
    again replaces the handler it installed before, never anybody else's.
    """
    out = stream or sys.stderr
    unchosen = source is not None and (source == "default" or source.startswith("adapter"))
    if fmt == "json" and unchosen and out.isatty():
        fmt = "text"
    logger = logging.getLogger(_ROOT)
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(out)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    set_level(level)
    logger.propagate = False


def set_level(level: str) -> None:
    """``omnicore.*`` records at ``level`` or above, on the stream :func:`configure` set up.

    The handler holds the level too, not only the logger: a part of the host that lowers a
    logger below it for a handler of its own (the console's live log lets plugins' info lines
    through to its view) does not make the stream print them (issue 63: a host set to
    ``warning`` wrote every plugin's info line to stderr while the console was on).
    """
    logger = logging.getLogger(_ROOT)
    logger.setLevel(level.upper())
    for handler in logger.handlers:
        if getattr(handler, _HANDLER_MARK, False):
            handler.setLevel(level.upper())
