"""The plugin catalog's contract (omnicore.storage.catalog_rows): every backend must pass."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from omnicore.storage import Storage
from omnicore.storage.catalog_rows import CHUNK_BYTES

pytestmark = pytest.mark.store("catalog")


def _module(seed: bytes, size: int) -> tuple[bytes, str]:
    data = (seed * (size // len(seed) + 1))[:size]
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def _chunks(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]


def _publish(storage: Storage, name: str, data: bytes, digest: str,
             sidecar: dict[str, object] | None = None,
             keep: int = 20) -> tuple[int, bool]:
    version, made = storage.catalog.publish(name, digest, len(data), _chunks(data),
                                            sidecar or {}, by="ada", at=time.time(), keep=keep)
    return version.id, made


def test_a_module_is_stored_in_chunks_and_read_back_one_chunk_at_a_time(storage: Storage) -> None:
    rows = storage.catalog
    data, digest = _module(b"0123456789abcdef", 2 * CHUNK_BYTES + 12345)
    version, made = rows.publish("big", digest, len(data), _chunks(data), {"config": {"a": 1}},
                                 by="ada", at=100.0, keep=5)
    assert made and version.number == 1 and version.digest == digest
    assert version.sidecar == {"config": {"a": 1}} and version.published_by == "ada"
    assert rows.module_size(digest) == (len(data), 3)
    assert [len(c) for c in rows.read(digest)] == [CHUNK_BYTES, CHUNK_BYTES, 12345]
    assert b"".join(rows.read(digest)) == data
    assert rows.chunk(digest, 3) is None and rows.module_size("sha256:" + "0" * 64) is None
    with pytest.raises(KeyError):
        next(rows.read("sha256:" + "0" * 64))


def test_versions_rollback_removal_and_the_change_sequence(storage: Storage) -> None:
    rows = storage.catalog
    assert rows.last_seq() == 0 and rows.entries() == [] and rows.entry("echo") is None
    one, d1 = _module(b"one", 100)
    two, d2 = _module(b"two", 200)
    v1, _ = _publish(storage, "echo", one, d1)
    seq1 = rows.last_seq()
    v2, _ = _publish(storage, "echo", two, d2)
    entry = rows.entry("echo")
    assert entry is not None and entry.version is not None and entry.version.id == v2
    assert [v.number for v in rows.versions("echo")] == [2, 1]
    back = rows.point("echo", v1, by="bob", at=5.0)
    assert back.version is not None and back.version.digest == d1 and back.updated_by == "bob"
    assert [e.version.digest for e in rows.changes(seq1) if e.version] == [d1]  # one name once
    with pytest.raises(KeyError):
        rows.point("echo", 10_000, by=None, at=6.0)
    gone = rows.remove("echo", by="bob", at=7.0)
    assert gone is not None and gone.version is None
    assert rows.remove("echo", by="bob", at=8.0) is None  # not in force any more
    assert rows.entries() == []
    removed = rows.changes(back.seq)
    assert [(e.name, e.version) for e in removed] == [("echo", None)]  # followers hear it
    assert len(rows.versions("echo")) == 2  # kept for a rollback


def test_the_same_module_and_sidecar_again_is_no_new_version(storage: Storage) -> None:
    data, digest = _module(b"same", 50)
    first, made = _publish(storage, "p", data, digest, {"limits": {"timeout_ms": 5}})
    seq = storage.catalog.last_seq()
    again, made_again = _publish(storage, "p", data, digest, {"limits": {"timeout_ms": 5}})
    assert made and not made_again and again == first and storage.catalog.last_seq() == seq
    other, made_other = _publish(storage, "p", data, digest, {"limits": {"timeout_ms": 6}})
    assert made_other and other != first  # a new sidecar is a new version


def test_a_module_is_stored_once_and_its_chunks_read_only_when_new(storage: Storage) -> None:
    data, digest = _module(b"shared", 3000)
    _publish(storage, "a", data, digest)

    def never() -> bytes | None:
        raise AssertionError("the chunks of a stored module were read again")

    version, made = storage.catalog.publish("b", digest, len(data), iter(never, None), {},
                                            by=None, at=1.0, keep=5)
    assert made and version.digest == digest and version.number == 1


def test_old_versions_beyond_keep_go_with_their_modules(storage: Storage) -> None:
    rows = storage.catalog
    digests = []
    for i in range(5):
        data, digest = _module(f"v{i}".encode(), 64 + i)
        digests.append(digest)
        _publish(storage, "p", data, digest, keep=2)
    assert [v.digest for v in rows.versions("p")] == [digests[4], digests[3]]
    assert all(rows.module_size(d) is None for d in digests[:3])
    # A module another name still uses stays.
    data, digest = _module(b"v4", 68)
    _publish(storage, "other", data, digest)
    for i in range(5, 8):
        more, more_digest = _module(f"v{i}".encode(), 64 + i)
        _publish(storage, "p", more, more_digest, keep=2)
    assert rows.module_size(digests[4]) is not None  # "other" publishes it
    entry = rows.entry("p")
    assert entry is not None and entry.version is not None
    assert rows.module_size(entry.version.digest) is not None


def test_a_short_or_long_upload_stores_nothing(storage: Storage) -> None:
    data, digest = _module(b"x", 100)
    for wrong in (data[:50], data + b"!"):
        with pytest.raises(ValueError, match="announced"):
            storage.catalog.publish("p", digest, len(data), [wrong], {}, by=None, at=1.0,
                                    keep=5)
    assert storage.catalog.module_size(digest) is None and storage.catalog.entry("p") is None
    assert storage.catalog.last_seq() == 0


def test_racing_publishes_of_one_name_each_make_a_version_in_order(storage: Storage) -> None:
    """Eight hosts publish one name at once: eight versions numbered 1..8, change numbers
    in commit order, and the one in force is the last committed."""
    errors: list[BaseException] = []

    def publish(i: int) -> None:
        try:
            data, digest = _module(f"race{i}".encode(), 500 + i)
            _publish(storage, "raced", data, digest)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    versions = storage.catalog.versions("raced")
    assert sorted(v.number for v in versions) == list(range(1, 9))
    entry = storage.catalog.entry("raced")
    assert entry is not None and entry.version is not None
    assert entry.version.id == max(v.id for v in versions)


def test_a_publish_racing_a_removal_leaves_one_answer(storage: Storage) -> None:
    data, digest = _module(b"base", 10)
    _publish(storage, "p", data, digest)
    barrier = threading.Barrier(2)
    new, new_digest = _module(b"new", 20)

    def publish() -> None:
        barrier.wait()
        _publish(storage, "p", new, new_digest)

    def remove() -> None:
        barrier.wait()
        storage.catalog.remove("p", by=None, at=time.time())

    threads = [threading.Thread(target=publish), threading.Thread(target=remove)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    entry = storage.catalog.entry("p")
    assert entry is not None
    # Whichever committed last decided; the change sequence's last change says the same.
    last = storage.catalog.changes(0)[-1]
    assert last.name == "p" and last.version == entry.version
    if entry.version is not None:
        assert entry.version.digest == new_digest
        assert storage.catalog.module_size(new_digest) == (20, 1)


def test_a_pin_holds_the_version_in_force_until_unpinned(storage: Storage) -> None:
    from omnicore.storage.catalog_rows import Pinned

    rows = storage.catalog
    mods = [_module(seed, 64) for seed in (b"p1", b"p2", b"p3", b"p4")]
    v1, _ = _publish(storage, "held", *mods[0])
    v2, _ = _publish(storage, "held", *mods[1])
    pinned = rows.pin("held", v1, by="ops", at=10.0)
    assert pinned.pinned and pinned.pinned_by == "ops" and pinned.pinned_at == 10.0
    assert pinned.version is not None and pinned.version.id == v1
    seq = rows.last_seq()
    # Published while pinned: kept, not in force, no change the hosts hear of.
    v3, made = _publish(storage, "held", *mods[2], keep=2)
    assert made and rows.last_seq() == seq
    again, made = _publish(storage, "held", *mods[2], keep=2)
    assert not made and again == v3
    v4, _ = _publish(storage, "held", *mods[3], keep=2)
    assert [v.id for v in rows.versions("held")] == [v4, v1]  # the pinned one is kept
    entry = rows.entry("held")
    assert entry is not None and entry.pinned and entry.version is not None
    assert entry.version.id == v1
    with pytest.raises(Pinned):
        rows.point("held", v4, by="x", at=11.0)
    with pytest.raises(Pinned):
        rows.remove("held", by="x", at=11.0)
    with pytest.raises(KeyError):
        rows.pin("held", v2, by="x", at=11.0)  # pruned
    assert rows.names_of(mods[0][1]) == ["held"] and rows.names_of(mods[0][1][:12]) == ["held"]
    assert rows.names_of("sha256:%") == []  # no pattern from the caller
    out = rows.unpin("held", by="ops", at=12.0)
    assert out is not None and not out.pinned and out.version is not None
    assert out.version.id == v4 and rows.last_seq() > seq
    assert rows.unpin("held", by="ops", at=13.0) is None
    assert rows.point("held", v1, by="x", at=14.0).version is not None
