"""The console's one error shape, for every API failure::

    {"error": {"status": 404, "type": "PluginNotFound", "message": "...", ...extra}}

``type`` is the omnicore exception's class name when one caused it (clients can branch on
``GuestError`` vs ``DeadlineExceeded``), else a short HTTP-level word (``BadRequest``,
``Forbidden``). A plugin that fails a call is not a console failure, so no plugin error maps
to a 5xx: a 5xx always means a bug in the host, or (507 ``DiskFull``) a disk with no room for
the change, which was not made.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from omnicore.console.responses import JSONResponse
from omnicore.errors import (
    CircuitOpen,
    ConfigError,
    DuplicatePlugin,
    HandlerNotFound,
    InputTooLarge,
    NeedsGrant,
    OmniError,
    PluginCallError,
    PluginCompiling,
    PluginLoadError,
    PluginNotFound,
)
from omnicore.jobs.service import KeyReused
from omnicore.plugins.catalog import ModuleTooLarge, VersionPinned
from omnicore.storage import Refused, StorageError, StorageFull

__all__ = ["ApiError", "disk_full", "error_response", "from_omni", "full_disk_error",
           "status_of"]

_WORDS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
          405: "MethodNotAllowed", 408: "Timeout", 409: "Conflict", 413: "TooLarge",
          415: "UnsupportedMedia", 422: "Invalid", 429: "TooManyRequests", 503: "Unavailable",
          507: "DiskFull"}
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: The backends' own words for a full disk (the console imports no backend: the storage keeps
#: the backend's error as the cause or context of its own).
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full

log = logging.getLogger("omnicore.console")


# Internal, outside omnicore.errors' tree on purpose: the console's exception handler turns it
# into the REST error body above; no caller of omnicore ever catches it.
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


def disk_full(exc: BaseException) -> BaseException | None:
    """The OS or SQLite error in ``exc``'s chain that says the disk is full, if any (an
    ``omnicore`` error keeps the backend's error as its context)."""
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        if isinstance(found, StorageFull) or \
                (isinstance(found, OSError) and found.errno in _FULL_ERRNOS):
            return found
        code = getattr(found, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF == _SQLITE_FULL:
            return found
        if getattr(found, "sqlstate", None) == _PG_DISK_FULL:
            return found
        found = found.__cause__ or found.__context__
    return None


def full_disk_error(cause: BaseException) -> ApiError:
    """The 507 answer for a change the disk had no room for, said in the log as well (the
    operator must hear of a full disk, not only the client)."""
    why = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
    error = ApiError(507, f"the disk is full ({why}); the change was not made: free some "
                          "space and try again (reads keep working)", type="DiskFull")
    log.warning("console: %s", error.message)
    return error


def status_of(exc: OmniError) -> int:
    """The HTTP status an omnicore error answers with (a full disk aside: :func:`from_omni`)."""
    if isinstance(exc, PluginNotFound | HandlerNotFound):
        return 404
    if isinstance(exc, DuplicatePlugin | KeyReused | VersionPinned):
        return 409
    if isinstance(exc, NeedsGrant | CircuitOpen):
        return 409
    if isinstance(exc, InputTooLarge | ModuleTooLarge):
        return 413
    if isinstance(exc, PluginCompiling):  # a moment later the same call works
        return 503
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
    cause = disk_full(exc)
    # A StorageFull says so itself (and the backend logs it); other errors hiding a full
    # disk are said plainly: their own words may be about a rollback.
    if cause is not None and not isinstance(exc, StorageFull):
        return ApiError(507, full_disk_error(cause).message, type="DiskFull", **fields,
                        **extra)
    return ApiError(status_of(exc), str(exc), type=type(exc).__name__, **fields, **extra)


def error_response(exc: ApiError) -> JSONResponse:
    body = {"status": exc.status, "type": exc.type, "message": exc.message, **exc.extra}
    return JSONResponse({"error": body}, status_code=exc.status, headers=exc.headers)
