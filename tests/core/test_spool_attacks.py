"""omnicore.core.spool under attack: what a neighbour with write access to the data dir, a
power loss or an operator's mistake can leave in ``<data_dir>/spool``. Every case runs the
real :class:`Spool` on real files; a host start must never hang, crash or lose what it
acknowledged because of another file's contents."""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import signal
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

import omnicore.core.spool as spool_mod
from omnicore.core.spool import Spool


def _die(spool: Spool) -> None:
    """The host is killed: its descriptor (and lock) go, nothing is tidied."""
    os.close(spool._fd)  # type: ignore[arg-type]
    spool._fd = None


def _dead_host(folder: Path, owner: str, records: list[dict[str, Any]]) -> Path:
    spool = Spool(folder, "events", owner)
    spool.open()
    for record in records:
        spool.append(record)
    _die(spool)
    return spool.path


def _framed(body: bytes) -> bytes:
    return struct.pack("<II", len(body), zlib.crc32(body)) + body


def test_a_zero_filled_tail_ends_the_records_and_the_start_goes_on(tmp_path: Path) -> None:
    # A power loss can leave a file's last blocks zeroed (its size was written, its data not:
    # the journal's unsynced confirmations). Eight zero bytes read as a whole record: length 0,
    # and CRC-32 of nothing is 0. Before: json.loads(b"") raised ValueError out of open(),
    # which the events service does not catch: the host did not start.
    path = _dead_host(tmp_path, "dead", [{"n": 1}, {"n": 2}])
    with path.open("ab") as f:
        f.write(b"\0" * 4096)
    spool = Spool(tmp_path, "events", "next")
    assert spool.open() == [{"n": 1}, {"n": 2}]
    spool.append({"n": 3})
    _die(spool)
    assert Spool(tmp_path, "events", "third").open() == [{"n": 1}, {"n": 2}, {"n": 3}]


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[1, 2]", b"\"text\"", b"null"],
                         ids=["not-json", "not-utf8", "a-list", "a-string", "null"])
def test_a_forged_record_that_is_not_an_object_ends_the_records(tmp_path: Path,
                                                                  body: bytes) -> None:
    # Well framed (its CRC right) but not a record: the reading stops there, as at a torn
    # one; what came before is adopted. Before: ValueError (or a list handed to the caller,
    # whose record.get raised AttributeError at start).
    path = _dead_host(tmp_path, "dead", [{"n": 1}])
    with path.open("ab") as f:
        f.write(_framed(body) + _framed(b'{"n": 2}'))
    assert Spool(tmp_path, "events", "next").open() == [{"n": 1}]


def test_a_huge_announced_length_allocates_nothing_and_ends_the_records(tmp_path: Path) -> None:
    path = _dead_host(tmp_path, "dead", [{"n": 1}])
    with path.open("ab") as f:
        f.write(struct.pack("<II", 0xFFFFFFFF, 0) + b"{}")
        f.write(struct.pack("<II", spool_mod.MAX_RECORD, 0) + b"{}")
    assert Spool(tmp_path, "events", "next").open() == [{"n": 1}]


def _open_in_child(folder: Path, out: Any) -> None:
    try:
        out.send(("ok", Spool(folder, "events", "child").open()))
    except BaseException as exc:  # reported to the parent
        out.send(("raised", repr(exc)))


def _open_elsewhere(folder: Path) -> tuple[str, Any]:
    """Spool.open in a child process: what it answered, or "hung" (killed after 60 s)."""
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_open_in_child, args=(folder, theirs))
    child.start()
    try:
        if not mine.poll(60):
            return "hung", None
        answer: tuple[str, Any] = mine.recv()
        return answer
    finally:
        if child.is_alive():
            child.kill()
        child.join(30)


def test_a_fifo_planted_as_a_spool_is_skipped_not_read_forever(tmp_path: Path) -> None:
    # Before: opened O_RDWR (so never at end of file), read until it ends: every host
    # started on the data dir hung in its start.
    _dead_host(tmp_path, "dead", [{"n": 1}])
    os.mkfifo(tmp_path / "events-fifo.spool", 0o600)
    assert _open_elsewhere(tmp_path) == ("ok", [{"n": 1}])
    assert (tmp_path / "events-fifo.spool").exists()  # not ours to remove


def test_a_symlink_planted_as_a_spool_is_not_followed(tmp_path: Path) -> None:
    # A link to a file elsewhere (/dev/zero read whole would take the host's memory; another
    # data dir's journal would be replayed here and its file left for its owner to replay
    # again). Before: followed, read, and the link removed.
    folder = tmp_path / "spool"
    elsewhere = tmp_path / "elsewhere"
    target = _dead_host(elsewhere, "theirs", [{"n": "theirs"}])
    folder.mkdir()
    (folder / "events-link.spool").symlink_to(target)
    assert _open_elsewhere(folder) == ("ok", [])
    assert (folder / "events-link.spool").is_symlink()
    assert Spool(elsewhere, "events", "owner").open() == [{"n": "theirs"}]


def test_a_symlink_planted_as_this_hosts_own_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    folder = tmp_path / "spool"
    folder.mkdir()
    (folder / "events-me.spool").symlink_to(victim)
    with pytest.raises(OSError):
        Spool(folder, "events", "me").open()
    assert victim.read_bytes() == b"precious"


def test_an_entry_that_cannot_be_opened_is_left_and_the_others_adopted(tmp_path: Path) -> None:
    # A directory by a spool's name (an operator's mkdir, a restore gone wrong). Before:
    # IsADirectoryError out of open(): the events service logged it and ran without a spool
    # (every publish of an outage refused), its own file left open and locked, and the dead
    # host's records never replayed.
    _dead_host(tmp_path, "dead", [{"n": 1}])
    (tmp_path / "events-adir.spool").mkdir()
    spool = Spool(tmp_path, "events", "next")
    assert spool.open() == [{"n": 1}]
    assert (tmp_path / "events-adir.spool").is_dir()
    spool.close()


def test_a_host_starting_beside_another_never_takes_its_fresh_file(tmp_path: Path,
                                                                    monkeypatch: Any) -> None:
    # Host "a" has created its file and not yet locked it when host "b" starts: "b" finds an
    # unlocked file and adopts it (removes it). Before: "a" then locked the removed file and
    # journaled into it: a publish it acknowledged was in no file a later host could find.
    real_lock = spool_mod._lock
    raced: list[Spool] = []

    def b_starts_first(fd: int) -> bool:
        if not raced:  # "a"'s own lock: "b" starts in between
            raced.append(b := Spool(tmp_path, "events", "b"))
            b.open()
        return real_lock(fd)

    monkeypatch.setattr(spool_mod, "_lock", b_starts_first)
    a = Spool(tmp_path, "events", "a")
    a.open()
    monkeypatch.setattr(spool_mod, "_lock", real_lock)
    a.append({"n": "acknowledged"})
    _die(a)
    raced[0].close()
    later = Spool(tmp_path, "events", "later")
    assert later.open() == [{"n": "acknowledged"}]
    later.close()


def _fill_in_child(folder: Path, limit: int, out: Any) -> None:
    # A full disk as the kernel reports it: writes past RLIMIT_FSIZE fail (EFBIG), partway
    # through a record too.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    spool = Spool(folder, "events", "full")
    spool.open()
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    taken: list[int] = []
    errors = 0
    for n in range(200):
        try:
            spool.append({"n": n, "pad": "x" * 300})
        except OSError:
            errors += 1
            continue
        taken.append(n)
    out.send((taken, errors, os.path.getsize(spool.path)))
    os._exit(0)  # killed: no close


def test_a_full_disk_refuses_the_append_and_keeps_every_acknowledged_record(
        tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_fill_in_child, args=(tmp_path, 10_000, theirs))
    child.start()
    assert mine.poll(60)
    taken, errors, size = mine.recv()
    child.join(30)
    assert taken and errors == 200 - len(taken)
    assert size <= 10_000
    found = Spool(tmp_path, "events", "next").open()
    assert [r["n"] for r in found] == taken  # no torn record, no refused one, none lost
    assert taken == list(range(len(taken)))


def test_records_forged_into_a_file_come_back_as_written(tmp_path: Path) -> None:
    # The spool is input: whoever can write the data dir can write records (as they can the
    # SQLite database beside it). Spool hands them back unchanged; what they may claim (a
    # plugin's name, its topics) is the events service's to check. Pinned so that a change
    # of that trust is a deliberate one.
    forged = {"k": "event", "plugin": "payments", "topic": "plugin.payments.paid"}
    (tmp_path / "events-forged.spool").write_bytes(_framed(json.dumps(forged).encode()))
    assert Spool(tmp_path, "events", "next").open() == [forged]


def test_a_symlink_planted_as_the_compaction_file_truncates_nothing(tmp_path: Path) -> None:
    # The compaction's file is named after the spool's, which anyone listing the folder sees.
    # Before: opened O_TRUNC through the link (the victim emptied and overwritten with
    # records), then the link renamed over the spool.
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    folder = tmp_path / "spool"
    spool = Spool(folder, "events", "me")
    spool.open()
    for n in range(3):
        spool.append({"n": n})
    spool.path.with_suffix(".tmp").symlink_to(victim)
    spool.rewrite([{"n": 2}])
    assert victim.read_bytes() == b"precious"
    assert not spool.path.is_symlink()
    _die(spool)
    assert Spool(folder, "events", "next").open() == [{"n": 2}]


def _adopt_in_child(folder: Path, limit: int, out: Any) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    spool = Spool(folder, "events", "full")
    try:
        out.send(("ok", spool.open(), os.path.getsize(spool.path)))
    except OSError as exc:
        out.send(("raised", repr(exc), None))
    os._exit(0)


def test_an_orphan_that_does_not_fit_on_the_disk_stays_for_a_later_start(
        tmp_path: Path) -> None:
    # The disk fills while a dead host's records are copied: none of them is half copied
    # into this host's file, the orphan stays whole, this host starts with its spool (before:
    # the OSError left the events service without one), and a later host adopts them all.
    records = [{"n": n, "pad": "x" * 300} for n in range(40)]
    path = _dead_host(tmp_path, "dead", records)
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_adopt_in_child, args=(tmp_path, 4000, theirs))
    child.start()
    assert mine.poll(60)
    assert mine.recv() == ("ok", [], 0)
    child.join(30)
    assert path.exists()
    assert Spool(tmp_path, "events", "later").open() == records
