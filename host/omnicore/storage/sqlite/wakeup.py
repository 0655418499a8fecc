"""Wake-ups between processes on one SQLite file: another process's enqueue wakes the host.

PostgreSQL has LISTEN/NOTIFY; SQLite has nothing of the kind, so a job enqueued by another
process (the CLI, a script with :func:`omnicore.storage.open_storage`) waited for the running
host's poll, a second. The host listens on a Linux abstract-namespace datagram socket named
after the database file; every enqueue from a process that is not the listener sends one
datagram, naming the queue, after its commit.

Why this shape: an abstract socket leaves no file behind and has no path-length limit, and
the kernel removes it when the process dies, even by SIGKILL. A datagram carries no data the
host trusts: it names a queue and can only end idle workers' waits early, so anyone who can
send one (a local process of any user) can cost the host a claim query and nothing more; the
listener drains every datagram waiting before it wakes anyone, and wakes at most every
``MIN_INTERVAL_S``. Where there are no abstract sockets (not Linux), this is a no-op and the
poll remains.
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from omnicore.core.background import Background

__all__ = ["Wakeup"]

_log = logging.getLogger("omnicore.storage")

#: Abstract sockets are Linux's.
SUPPORTED = sys.platform.startswith("linux")
#: At most one wake-up per this many seconds, whatever arrives: a flood of datagrams costs
#: the host at most 500 claim rounds a second (enqueues are coalesced within it anyway).
MIN_INTERVAL_S = 0.002


class Wakeup:
    """The wake-up channel of one database file: :meth:`listen` (the host) and :meth:`send`
    (every other process that enqueues)."""

    def __init__(self, db_path: Path) -> None:
        digest = hashlib.sha256(os.fsencode(os.path.realpath(db_path))).hexdigest()[:32]
        self.address = b"\0omnicore-wake-" + digest.encode()
        self._callbacks: list[tuple[str | None, Callable[[], None]]] = []
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._sender: socket.socket | None = None
        #: Started by the first listener, never again once closed.
        self._listening = Background("omnicore-sqlite-wakeup", once=True)

    def listen(self, callback: Callable[[], None], queue: str | None) -> None:
        """Call ``callback`` when another process enqueues on ``queue`` (None: any)."""
        if not SUPPORTED:
            return
        with self._lock:
            self._callbacks.append((queue, callback))
            if self._sock is not None or self._listening.stopping.is_set():
                return
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.bind(self.address)
            except OSError as exc:  # another listener on this file (a test's second storage)
                sock.close()
                _log.debug("storage: no cross-process wake-ups (%s): polling", exc)
                return
            sock.setblocking(False)
            self._sock = sock
            self._listening.start(self._run)

    def send(self, queue: str) -> None:
        """Tell the listener, if any, that ``queue`` has new work (never blocks, never raises)."""
        if not SUPPORTED or self._sock is not None:
            return  # no channel here, or this process is the listener and wakes itself
        try:
            sender = self._sender
            if sender is None:
                sender = self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.sendto(queue.encode(), socket.MSG_DONTWAIT, self.address)
        except OSError:
            pass  # nobody listens (no host runs), or its buffer is full: it wakes anyway

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        stopping = self._listening.stopping
        while not stopping.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.5)
            except (OSError, ValueError):
                return  # closed
            if not ready or stopping.is_set():
                continue
            woke = set()
            while True:  # drain: a burst of enqueues is one wake-up
                try:
                    woke.add(sock.recv(64))
                except OSError:  # BlockingIOError: nothing more waits
                    break
            names = {w.decode("ascii", "replace") for w in woke}
            for queue, callback in list(self._callbacks):
                if queue is None or queue in names:
                    try:
                        callback()
                    except Exception:
                        _log.exception("storage: a wake-up callback failed")
            stopping.wait(MIN_INTERVAL_S)

    def close(self) -> None:
        self._listening.stopping.set()
        if self._listening.running:
            # End its wait now, not at the next half-second poll: every host stop paid it.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as waker:
                try:
                    waker.sendto(b"", socket.MSG_DONTWAIT, self.address)
                except OSError:
                    pass  # its buffer is full: it is awake anyway
        self._listening.stop(2)
        for sock in (self._sock, self._sender):
            if sock is not None:
                sock.close()
        self._sock = self._sender = None
