"""What a PostgreSQL connection must be before a plugin's statement runs on it (specs/abi.md
§4.10-4.12):

* a server or database whose ``standard_conforming_strings`` is off is refused at connect,
  naming it and what to do (the statement gate reads strings as the default ``on`` does).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from omnicore.egress.db import db_connector
from omnicore.egress.db.service import _make
from omnicore.egress.refused import Refused


def _backend(url: str, password: str = "pw") -> Any:
    connector = db_connector("pg", {"kind": "postgres", "url": url, "secret": "pw",
                                    "pool_size": 1, "privileges": "warn"})
    return _make(connector, lambda name: password.encode())


def test_a_database_without_standard_conforming_strings_is_refused_by_name(
        pg_cluster: Any) -> None:
    url = str(pg_cluster.database("scs_off")).replace("omnicore:omnicore@", "omnicore@")
    backend = _backend(url, "omnicore")
    try:
        assert json.loads(backend.run("p", True, "SELECT 'a\\b'", [], time.monotonic() + 10)
                          )["rows"] == [["a\\b"]]
    finally:
        backend.close()
    pg_cluster.psql("ALTER DATABASE scs_off SET standard_conforming_strings = off")
    try:
        backend = _backend(url, "omnicore")
        try:
            with pytest.raises(Refused) as info:
                backend.run("p", True, "SELECT 1", [], time.monotonic() + 10)
        finally:
            backend.close()
        message = str(info.value)
        assert info.value.status == "UNAVAILABLE", message
        assert "standard_conforming_strings = off" in message, message
        assert "ALTER DATABASE scs_off SET standard_conforming_strings = on" in message, message
    finally:
        pg_cluster.psql("ALTER DATABASE scs_off RESET standard_conforming_strings")
    backend = _backend(url, "omnicore")
    try:  # set back on: served again
        assert json.loads(backend.run("p", True, "SELECT 1", [], time.monotonic() + 10)
                          )["rows"] == [[1]]
    finally:
        backend.close()


def test_a_role_without_standard_conforming_strings_is_refused_too(pg_cluster: Any) -> None:
    url = str(pg_cluster.database("scs_role")).replace("omnicore:omnicore@", "omnicore@")
    pg_cluster.psql("CREATE ROLE scs_reader LOGIN PASSWORD 'scs-pw-1'")
    pg_cluster.psql("GRANT CONNECT ON DATABASE scs_role TO scs_reader")
    pg_cluster.psql("ALTER ROLE scs_reader SET standard_conforming_strings = off")
    try:
        backend = _backend(url.replace("omnicore@", "scs_reader@"), "scs-pw-1")
        try:
            with pytest.raises(Refused) as info:
                backend.run("p", True, "SELECT 1", [], time.monotonic() + 10)
        finally:
            backend.close()
        assert "role scs_reader with standard_conforming_strings = off" in str(info.value)
        assert "ALTER ROLE scs_reader RESET standard_conforming_strings" in str(info.value)
    finally:
        pg_cluster.psql("DROP OWNED BY scs_reader", db="scs_role")
        pg_cluster.psql("DROP ROLE scs_reader")
