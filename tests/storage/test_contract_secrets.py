"""The sealed secrets contract (omnicore.storage.secret_rows): every backend must pass these.

A backend only keeps what it is handed; sealing and the key stay above it.
"""

from __future__ import annotations

import pytest

from omnicore.storage import Storage
from omnicore.storage.secret_rows import Sealed

pytestmark = pytest.mark.store("secrets")


def test_put_get_replace_delete(storage: Storage) -> None:
    rows = storage.secrets
    assert rows.get("token") is None and rows.names() == []
    rows.put("token", Sealed("k1", b"\x00" * 12, b"\xffcipher"), 1.0)
    rows.put("api.key", Sealed("k1", b"n" * 12, b"c2"), 2.0)
    assert rows.get("token") == Sealed("k1", b"\x00" * 12, b"\xffcipher")
    assert rows.names() == ["api.key", "token"]
    rows.put("token", Sealed("k2", b"m" * 12, b"new"), 3.0)
    assert rows.get("token") == Sealed("k2", b"m" * 12, b"new")
    assert rows.names() == ["api.key", "token"]
    assert rows.delete("token") is True
    assert rows.delete("token") is False
    assert rows.get("token") is None and rows.names() == ["api.key"]


def test_uses_key_tells_which_keys_sealed_rows(storage: Storage) -> None:
    rows = storage.secrets
    assert rows.uses_key("k1") is False
    rows.put("a", Sealed("k1", b"n", b"c"), 1.0)
    assert rows.uses_key("k1") is True and rows.uses_key("k2") is False
    rows.put("a", Sealed("k2", b"n", b"c"), 2.0)
    assert rows.uses_key("k1") is False and rows.uses_key("k2") is True


def test_reseal_replaces_every_row_or_none(storage: Storage) -> None:
    rows = storage.secrets
    for name in ("a", "b", "c"):
        rows.put(name, Sealed("old", name.encode(), b"sealed-" + name.encode()), 1.0)

    def half(name: str, sealed: Sealed) -> Sealed:
        if name == "b":  # the second row fails: the first must not stay resealed
            raise ValueError("cannot open b")
        return Sealed("new", b"fresh", sealed.ciphertext + b"!")

    with pytest.raises(ValueError, match="cannot open b"):
        rows.reseal(half)
    assert {rows.get(n).key_id for n in "abc"} == {"old"}  # type: ignore[union-attr]
    assert rows.get("a") == Sealed("old", b"a", b"sealed-a")
    assert rows.reseal(lambda name, s: Sealed("new", b"fresh" + name.encode(),
                                              s.ciphertext + b"!")) == 3
    assert rows.get("c") == Sealed("new", b"freshc", b"sealed-c!")
    assert rows.uses_key("old") is False
