"""Lines in the plugin's own log (``omnicore:log``; every plugin has it)."""

from __future__ import annotations

from omnicore_plugin._binding import Binding

__all__ = ["debug", "enabled", "error", "info", "trace", "warn"]

_host = Binding("log")


def _write(level: str, message: str) -> None:
    mod = _host.module()
    mod.write(getattr(mod.Level, level), message)


def enabled(level: str) -> bool:
    """Whether a line at ``level`` (trace, debug, info, warn, error) would be kept."""
    mod = _host.module()
    return bool(mod.enabled(getattr(mod.Level, level.upper())))


def trace(message: str) -> None:
    """Log at trace level."""
    _write("TRACE", message)


def debug(message: str) -> None:
    """Log at debug level."""
    _write("DEBUG", message)


def info(message: str) -> None:
    """Log at info level."""
    _write("INFO", message)


def warn(message: str) -> None:
    """Log at warn level."""
    _write("WARN", message)


def error(message: str) -> None:
    """Log at error level."""
    _write("ERROR", message)
