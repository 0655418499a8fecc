"""The secret store's interface: sealed blobs by name. Sealing stays above it.

A backend keeps what :mod:`omnicore.storage.secrets` hands it — the id of the key that sealed
a value, the nonce and the ciphertext — and never sees a key or a plain value.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Sealed", "SecretRows"]


@dataclass(frozen=True, slots=True)
class Sealed:
    """One sealed value: the key that sealed it, its nonce, the ciphertext (with its tag)."""

    key_id: str
    nonce: bytes
    ciphertext: bytes


class SecretRows(abc.ABC):
    """Every sealed secret of one app. Thread-safe."""

    @abc.abstractmethod
    def names(self) -> list[str]:
        """The names that are set, sorted."""

    @abc.abstractmethod
    def get(self, name: str) -> Sealed | None: ...

    @abc.abstractmethod
    def put(self, name: str, sealed: Sealed, now: float) -> None:
        """Set or replace ``name``."""

    @abc.abstractmethod
    def delete(self, name: str) -> bool:
        """Whether ``name`` was set."""

    @abc.abstractmethod
    def uses_key(self, key_id: str) -> bool:
        """Whether any secret is sealed with ``key_id``."""

    @abc.abstractmethod
    def reseal(self, fn: Callable[[str, Sealed], Sealed]) -> int:
        """Replace every secret by ``fn(name, sealed)`` in one transaction (an error from
        ``fn`` leaves every row as it was); how many."""
