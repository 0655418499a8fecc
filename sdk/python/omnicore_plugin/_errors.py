"""The one exception the capability modules raise."""

from __future__ import annotations

__all__ = ["CODES", "HostError"]

#: The host's status codes (specs/abi.md §3.1), the same names in every SDK.
CODES = ("NOT_FOUND", "DENIED", "INVALID", "QUOTA", "UNAVAILABLE", "TOO_LARGE")


class HostError(Exception):
    """A host function refused: ``code`` is one of :data:`CODES` (``"QUOTA"``)."""

    def __init__(self, code: str, call: str, detail: str = "") -> None:
        super().__init__(f"{call} failed: {code}" + (f": {detail}" if detail else ""))
        self.code = code
        self.call = call
        #: The host's words, when it gave any (http: why the request was refused).
        self.detail = detail
