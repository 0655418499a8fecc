"""Console passwords (accounts/users.py, ``console.password_hash``): argon2id at argon2-cffi's
defaults unless the operator says otherwise; a sign-in rehashes a password stored with other
settings; the dummy hash that keeps an unknown name as slow as a known one is made by the
first sign-in, not by every host start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from omnicore import OmniApp
from omnicore.accounts.users import UserStore, hasher_for
from omnicore.config import load_config
from omnicore.console.module import ConsoleModule
from omnicore.errors import ConfigError
from omnicore.storage import SQLiteStorage

PASSWORD = "correct horse battery"


def _params(stored: str) -> str:
    """``m=...,t=...,p=...`` of an argon2 hash string."""
    assert stored.startswith("$argon2id$v=19$"), stored
    return stored.split("$")[3]


class _Counting(PasswordHasher):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.hashed = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.hashed += 1
        return super().hash(password, salt=salt)


def test_the_default_cost_is_argon2_cffis_and_the_setting_changes_it(tmp_path: Path) -> None:
    defaults = load_config(None).console.password_hash
    storage = SQLiteStorage(tmp_path / "omnicore.db")
    store = UserStore(storage.users, owner=storage,
                      hasher=hasher_for(**defaults.model_dump()))
    try:
        store.add("ada", PASSWORD)
        assert _params(storage.users.password_hash("ada") or "") == "m=65536,t=3,p=4"
        assert _params(PasswordHasher().hash("x")) == "m=65536,t=3,p=4"  # the library's own
    finally:
        store.close()


@contextmanager
def _console(data: Path, cost: dict[str, int]) -> Iterator[UserStore]:
    """The accounts of a started host whose console has ``console.password_hash: cost``."""
    app = OmniApp("hash", overrides={"data_dir": str(data),
                                     "console": {"port": 0, "password_hash": cost}})
    module = ConsoleModule()
    app.add_module(module)
    app.start()
    try:
        assert module.console is not None
        yield module.console.auth.store
    finally:
        app.stop()


def test_a_sign_in_rehashes_a_password_stored_with_other_settings(tmp_path: Path) -> None:
    """Raising the cost reaches each user at their next sign-in; a wrong password changes
    nothing."""
    data = tmp_path / "data"
    cheap = {"time_cost": 1, "memory_kib": 64, "parallelism": 1}
    with _console(data, cheap) as store:
        store.add("ada", PASSWORD)
    rows = SQLiteStorage(data / "console.db")
    try:
        before = rows.users.password_hash("ada") or ""
    finally:
        rows.close()
    assert _params(before) == "m=64,t=1,p=1"
    dearer = {"time_cost": 2, "memory_kib": 128, "parallelism": 2}
    with _console(data, dearer) as store:
        assert store.authenticate("ada", "not the password") is None
        assert store._rows.password_hash("ada") == before
        user = store.authenticate("ada", PASSWORD)
        assert user is not None and user.name == "ada"
        after = store._rows.password_hash("ada") or ""
        assert _params(after) == "m=128,t=2,p=2"
        assert store.authenticate("ada", PASSWORD) is not None  # the new hash verifies


def test_the_dummy_hash_is_made_by_the_first_sign_in_known_name_or_not(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "omnicore.db")
    hasher = _Counting(time_cost=1, memory_cost=64, parallelism=1)
    store = UserStore(storage.users, owner=storage, hasher=hasher)
    try:
        assert hasher.hashed == 0  # a host start, an `omnicore users` command: no hash
        store.add("ada", PASSWORD)
        assert hasher.hashed == 1
        # The first sign-in pays for the dummy whatever the name, so its time does not say
        # whether the name exists.
        assert store.authenticate("ada", PASSWORD) is not None
        assert hasher.hashed == 2
        assert store.authenticate("nobody", PASSWORD) is None
        assert store.authenticate("ada", "wrong password") is None
        assert hasher.hashed == 2  # made once
    finally:
        store.close()
    fresh = SQLiteStorage(tmp_path / "other.db")
    counting = _Counting(time_cost=1, memory_cost=64, parallelism=1)
    other = UserStore(fresh.users, owner=fresh, hasher=counting)
    try:
        assert other.authenticate("nobody", PASSWORD) is None
        assert counting.hashed == 1  # an unknown name's first sign-in makes it too
    finally:
        other.close()


@pytest.mark.parametrize(("setting", "message"), [
    ({"memory_kib": 16, "parallelism": 4}, "memory_kib must be at least 8 per lane (32"),
    ({"time_cost": 0}, "time_cost"),
    ({"parallelism": 0}, "parallelism"),
])
def test_a_cost_argon2_cannot_take_is_refused_by_name(setting: dict[str, int],
                                                      message: str, tmp_path: Path) -> None:
    path = tmp_path / "omnicore.yaml"
    path.write_text("console:\n  password_hash:\n" + "".join(
        f"    {key}: {value}\n" for key, value in setting.items()))
    with pytest.raises(ConfigError, match="password_hash") as caught:
        load_config(path)
    assert message in str(caught.value)
