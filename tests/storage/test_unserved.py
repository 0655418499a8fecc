"""A backend that does not serve a store yet refuses it by name; what it serves is shared.

Until PostgreSQL serves a store, using it is a ConfigError that names the store (never a
half-working store). The console's accounts, secrets and audit log it serves: every instance
on one database sees the same ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicore.errors import ConfigError
from omnicore.storage import open_storage


@pytest.mark.parametrize("store", ["workflows"])
def test_each_store_postgres_does_not_serve_yet_is_refused_by_name(
        store: str, pg_url: str, tmp_path: Path) -> None:
    storage = open_storage(tmp_path, url=pg_url)
    try:
        with pytest.raises(ConfigError, match=f"^{store} needs a storage backend") as info:
            getattr(storage, store)
        assert info.value.key == "storage"
        assert "PostgresStorage" in str(info.value)
        storage.kv("p").set("k", b"v")  # what it serves keeps working
        assert storage.kv("p").get("k") == b"v"
    finally:
        storage.close()


def test_accounts_and_secrets_on_postgres_are_shared_by_every_instance(
        pg_url: str, tmp_path: Path) -> None:
    from omnicore.storage.secret_rows import Sealed

    one, two = open_storage(tmp_path / "one", url=pg_url), open_storage(tmp_path / "two",
                                                                         url=pg_url)
    try:
        assert one.users.add("ada", "hash", "admin", 1.0) is True
        token = one.users.add_token("digest-1", "ci", "ada", 2.0)
        user = two.users.token_user("digest-1", 3.0)  # a token made through one instance
        assert user is not None and user.name == "ada"
        assert [t.last_used for t in one.users.tokens("ada") if t.id == token] == [3.0]
        one.secrets.put("api", Sealed("k1", b"n" * 12, b"sealed"), 4.0)
        assert two.secrets.get("api") == Sealed("k1", b"n" * 12, b"sealed")
        assert not (tmp_path / "one" / "console.db").exists()  # nothing kept per instance
    finally:
        one.close()
        two.close()
