"""A backend that does not serve a store yet refuses it by name; accounts stay usable.

PostgreSQL serves kv, jobs, schedules and events first. Until it serves the other stores,
each of them is a ConfigError that names the store (never a half-working store), and the
console's accounts stay in ``<data_dir>/console.db`` as they always were, so an app on
PostgreSQL still signs its users in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicore.errors import ConfigError
from omnicore.storage import open_storage


@pytest.mark.parametrize("store", ["secrets", "workflows", "audit"])
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


def test_accounts_on_postgres_stay_in_the_data_dirs_console_db(
        pg_url: str, tmp_path: Path) -> None:
    storage = open_storage(tmp_path, url=pg_url)
    try:
        assert storage.users.add("ada", "hash", "admin", 1.0) is True
    finally:
        storage.close()
    assert (tmp_path / "console.db").is_file()
    local = open_storage(tmp_path)  # what `omnicore users` opens sees the same accounts
    try:
        assert [u.name for u in local.users.users()] == ["ada"]
    finally:
        local.close()
