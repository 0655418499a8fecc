"""A value made on first use, once, whichever thread asks first (the app's stores, a service
module's service): the double-checked lock written in one place."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Once"]

T = TypeVar("T")


class Once(Generic[T]):
    """``get()`` makes the value with ``make()`` the first time and returns the same one after;
    two threads asking at once share one value. ``take()`` forgets it (the next ``get()``
    makes a new one) and hands back what was made, for the caller to close."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self) -> T:
        # Read without the lock first: once made, a get costs one attribute read.
        found = self._value
        if found is None:
            with self._lock:
                found = self._value
                if found is None:
                    found = self._value = self._make()
        return found

    @property
    def made(self) -> T | None:
        """The value if it was made, else None (asking does not make it)."""
        return self._value

    def take(self) -> T | None:
        """Forget the value and return it (None if it was not made)."""
        with self._lock:
            found, self._value = self._value, None
        return found
