"""Why a request did not get an answer, as a status the caller can act on."""

from __future__ import annotations

from omnicore.errors import Refused as _Refused

__all__ = ["STATUSES", "EgressRefused", "Refused", "SecretMissing"]

#: ``DENIED`` the rules refuse it; ``INVALID`` it is malformed; ``QUOTA`` too many in flight;
#: ``TOO_LARGE`` a size limit; ``UNAVAILABLE`` it failed on the way (timeout, connection,
#: a secret that is not set).
STATUSES = ("DENIED", "INVALID", "QUOTA", "TOO_LARGE", "UNAVAILABLE")


class EgressRefused(_Refused):
    """A request the policy refused or that failed: ``status`` is one of :data:`STATUSES`,
    the message says why and never holds a credential (it is redacted before it leaves
    :mod:`omnicore.egress`)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later (a timeout, a connection, a quota)."""
        return self.status in ("QUOTA", "UNAVAILABLE")


#: The name users and this package have always used; the one class named Refused is
#: :class:`omnicore.errors.Refused`, the base of every refusal.
Refused = EgressRefused


class SecretMissing(EgressRefused):
    """A secret the request needs is not set; trying again will not help until it is."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__("UNAVAILABLE", message)
        self.name = name

    @property
    def retryable(self) -> bool:
        return False
