"""The console's one error shape, for every API failure::

    {"error": {"status": 404, "type": "PluginNotFound", "message": "...", ...extra}}

``type`` is the omnicore exception's class name when one caused it (clients can branch on
``GuestError`` vs ``DeadlineExceeded``), else a short HTTP-level word (``BadRequest``,
``Forbidden``). A plugin that fails a call is not a console failure, so no plugin error maps
to a 5xx: a 5xx always means a bug in the host, or storage that failed (503; a full disk
507, its message saying so).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from omnicore.errors import (
    CircuitOpen,
    ConfigError,
    DuplicatePlugin,
    HandlerNotFound,
    InputTooLarge,
    NeedsGrant,
    OmniError,
    PluginCallError,
    PluginLoadError,
    PluginNotFound,
)
from omnicore.storage import Refused, StorageError, StorageFull

__all__ = ["ApiError", "error_response", "from_omni", "status_of"]

_WORDS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
          405: "MethodNotAllowed", 409: "Conflict", 413: "TooLarge", 415: "UnsupportedMedia",
          422: "Invalid", 429: "TooManyRequests", 503: "Unavailable",
          507: "InsufficientStorage"}


class ApiError(Exception):
    """Raise inside a handler to answer with the error shape."""

    def __init__(self, status: int, message: str, *, type: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _WORDS.get(status, "Error")
        self.headers = headers
        self.extra = extra


def status_of(exc: OmniError) -> int:
    """The HTTP status an omnicore error answers with."""
    if isinstance(exc, PluginNotFound | HandlerNotFound):
        return 404
    if isinstance(exc, DuplicatePlugin):
        return 409
    if isinstance(exc, NeedsGrant | CircuitOpen):
        return 409
    if isinstance(exc, InputTooLarge):
        return 413
    if isinstance(exc, PluginLoadError | ConfigError | PluginCallError):
        return 422
    if isinstance(exc, StorageFull):
        return 507
    if isinstance(exc, StorageError) and not isinstance(exc, Refused):
        return 503
    return 400


def from_omni(exc: OmniError, **extra: Any) -> ApiError:
    plugin = getattr(exc, "plugin", None)
    handler = getattr(exc, "handler", None)
    fields = {k: v for k, v in (("plugin", plugin), ("handler", handler)) if v}
    missing = getattr(exc, "missing", None)
    if missing:
        fields["missing"] = list(missing)
    return ApiError(status_of(exc), str(exc), type=type(exc).__name__, **fields, **extra)


def error_response(exc: ApiError) -> JSONResponse:
    body = {"status": exc.status, "type": exc.type, "message": exc.message, **exc.extra}
    return JSONResponse({"error": body}, status_code=exc.status, headers=exc.headers)


async def handle_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)
