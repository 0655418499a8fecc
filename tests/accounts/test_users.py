"""API tokens (accounts/users.py): a token's last use is stamped at most every
LAST_USE_EVERY_S, so a script calling in a loop is not a write per request; the lookup still
happens every time, so a revoked token fails at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.accounts import users
from omnicore.accounts.users import UserStore
from omnicore.storage import SQLiteStorage


@pytest.fixture
def store(tmp_path: Path) -> Iterator[UserStore]:
    storage = SQLiteStorage(tmp_path / "omnicore.db")
    s = UserStore(storage.users, owner=storage)
    s.add("ada", "correct horse battery", "admin")
    try:
        yield s
    finally:
        s.close()


def _last_used(store: UserStore, token_id: int) -> float | None:
    return next(t.last_used for t in store.tokens() if t.id == token_id)


def test_a_token_in_a_loop_is_stamped_once_per_period(store: UserStore,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    secret, token = store.new_token("ada", "loop")
    user = store.token_user(secret)
    assert user is not None and user.name == "ada"
    first = _last_used(store, token.id)
    assert first is not None
    for _ in range(20):
        assert store.token_user(secret) is not None
    assert _last_used(store, token.id) == first  # no write per request
    monkeypatch.setattr(users, "LAST_USE_EVERY_S", 0.0)  # the period is over
    assert store.token_user(secret) is not None
    stamped = _last_used(store, token.id)
    assert stamped is not None and stamped >= first


def test_a_revoked_token_fails_at_once_inside_the_period(store: UserStore) -> None:
    secret, token = store.new_token("ada", "revoked")
    other, _ = store.new_token("ada", "kept")
    assert store.token_user(secret) is not None and store.token_user(other) is not None
    assert store.delete_token(token.id)
    assert store.token_user(secret) is None
    assert store.token_user(other) is not None
    # Its sibling: the token's user deleted (with the other tokens), also at once.
    store.add("bo", "correct horse battery", "viewer")
    bos, _ = store.new_token("bo", "bo's")
    assert store.token_user(bos) is not None
    assert store.delete("bo")
    assert store.token_user(bos) is None


def test_unknown_tokens_are_never_remembered(store: UserStore) -> None:
    for i in range(100):
        assert store.token_user(f"oc_not-a-token-{i}") is None
    assert store._stamped == {}
