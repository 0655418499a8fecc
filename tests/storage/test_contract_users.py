"""The console accounts contract (omnicore.storage.user_rows): every backend must pass these.

Secrets never reach a backend: tokens, sessions and setup links arrive as digests, passwords
as hashes; these tests hand it made-up ones.
"""

from __future__ import annotations

import pytest

from omnicore.storage import Storage
from omnicore.storage.stores.users import SETUP_LINKS_KEPT
from omnicore.storage.user_rows import User, UserRows

pytestmark = pytest.mark.store("users")


def _two_users(rows: UserRows) -> None:
    assert rows.add("ada", "hash-a", "admin", 1.0) is True
    assert rows.add("bob", "hash-b", "viewer", 2.0) is True


def test_users_are_added_once_and_read_back(storage: Storage) -> None:
    rows = storage.users
    assert rows.count() == 0 and rows.users() == []
    _two_users(rows)
    assert rows.add("ada", "other", "viewer", 3.0) is False  # taken: nothing changes
    assert rows.password_hash("ada") == "hash-a"
    assert rows.get("ada") == User("ada", "admin", 1.0)
    assert [u.name for u in rows.users()] == ["ada", "bob"] and rows.count() == 2
    assert rows.get("nobody") is None and rows.password_hash("nobody") is None
    assert rows.set_password_hash("bob", "hash-b2") is True
    assert rows.set_password_hash("nobody", "x") is False
    assert rows.password_hash("bob") == "hash-b2"


def test_sessions_expire_end_and_end_with_their_user(storage: Storage) -> None:
    rows = storage.users
    _two_users(rows)
    rows.add_session("s-old", "ada", "csrf0", 10.0, 20.0)
    rows.add_session("s-ada", "ada", "csrf1", 30.0, 100.0)  # drops what expired before 30
    rows.add_session("s-bob", "bob", "csrf2", 30.0, 100.0)
    assert rows.session("s-old") is None
    found = rows.session("s-ada")
    assert found is not None and found.user == User("ada", "admin", 1.0)
    assert (found.csrf, found.expires) == ("csrf1", 100.0)
    rows.end_session("s-ada")
    assert rows.session("s-ada") is None
    rows.add_session("s-ada2", "ada", "c", 40.0, 100.0)
    rows.end_sessions("ada")
    assert rows.session("s-ada2") is None and rows.session("s-bob") is not None
    assert rows.delete("bob") is True and rows.delete("bob") is False
    assert rows.session("s-bob") is None  # a deleted user's sessions go with it


def test_tokens_name_their_user_and_are_deleted_only_by_it(storage: Storage) -> None:
    rows = storage.users
    _two_users(rows)
    first = rows.add_token("d1", "ci", "ada", 5.0)
    second = rows.add_token("d2", "laptop", "bob", 6.0)
    assert first != second
    assert [(t.id, t.label, t.user, t.last_used) for t in rows.tokens()] == [
        (first, "ci", "ada", None), (second, "laptop", "bob", None)]
    assert rows.token_user("d1", 50.0) == User("ada", "admin", 1.0)
    assert rows.tokens("ada")[0].last_used == 50.0
    assert rows.token_user("nope", 50.0) is None
    assert rows.delete_token(first, user="bob") is False  # not bob's
    assert rows.token_user("d1", 51.0) is not None
    assert rows.delete_token(first, user="ada") is True
    assert rows.token_user("d1", 52.0) is None
    rows.delete("bob")
    assert rows.tokens() == [] and rows.token_user("d2", 53.0) is None


def test_every_hosts_setup_link_stays_valid(storage: Storage) -> None:
    rows = storage.users
    assert rows.setup_link("l1") is None
    rows.add_setup_link("l1", 100.0, 0.0)
    rows.add_setup_link("l2", 200.0, 1.0)  # a second host's link: the first one stays
    assert rows.setup_link("l1") == 100.0 and rows.setup_link("l2") == 200.0
    assert rows.delete_setup_link("l2") is True
    assert rows.delete_setup_link("l2") is False  # of two racing for one link, one wins
    assert rows.setup_link("l2") is None
    rows.add_setup_link("l3", 300.0, 150.0)  # the expired one goes
    assert rows.setup_link("l1") is None and rows.setup_link("l3") == 300.0


def test_only_the_newest_setup_links_are_kept(storage: Storage) -> None:
    rows = storage.users
    for i in range(SETUP_LINKS_KEPT + 5):  # a host restarting in a loop
        rows.add_setup_link(f"l{i}", 1000.0 + i, 0.0)
    kept = [i for i in range(SETUP_LINKS_KEPT + 5) if rows.setup_link(f"l{i}") is not None]
    assert kept == list(range(5, SETUP_LINKS_KEPT + 5))


def test_a_lookup_without_a_time_writes_nothing(storage: Storage) -> None:
    rows = storage.users
    _two_users(rows)
    rows.add_token("d1", "cli", "ada", 10.0)
    assert rows.token_user("d1", None) == User("ada", "admin", 1.0)
    assert rows.tokens()[0].last_used is None       # a full disk needs no write to read
    assert rows.token_user("d1", 50.0) is not None and rows.tokens()[0].last_used == 50.0
    assert rows.token_user("nope", None) is None


def test_having_had_users_outlives_them(storage: Storage) -> None:
    rows = storage.users
    assert rows.had_users() is False
    _two_users(rows)
    assert rows.delete("ada") and rows.delete("bob") and rows.count() == 0
    assert rows.had_users() is True  # the setup link is for the first admin only
