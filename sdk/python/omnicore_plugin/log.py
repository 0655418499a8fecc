"""Lines in the plugin's own log (``omnicore:log``; every plugin has it)."""

from __future__ import annotations

from omnicore_plugin._binding import Binding

__all__ = ["debug", "enabled", "error", "info", "trace", "warn"]

_host = Binding("log")


def _write(level: str, message: str) -> None:
    _host.call("write", _host.case("Level", level), message)


def enabled(level: str) -> bool:
    """Whether a line at ``level`` (trace, debug, info, warn, error) would be kept."""
    return bool(_host.call("enabled", _host.case("Level", level.lower())))


def trace(message: str) -> None:
    """Log at trace level."""
    _write("trace", message)


def debug(message: str) -> None:
    """Log at debug level."""
    _write("debug", message)


def info(message: str) -> None:
    """Log at info level."""
    _write("info", message)


def warn(message: str) -> None:
    """Log at warn level."""
    _write("warn", message)


def error(message: str) -> None:
    """Log at error level."""
    _write("error", message)
