"""The one connection each PostgreSQL storage keeps open outside the pool.

That connection (:class:`Liveness`, autocommit) does two jobs:

* it holds a session advisory lock ``(LIVENESS_KEY, slot)`` for the registered instance. The
  server drops it the moment the connection closes, which the kernel does when the process
  dies, even by SIGKILL; the instance table's reap treats a row whose lock is gone as dead
  (after a short grace for a live instance reconnecting), so a takeover does not wait for a
  heartbeat to go stale or a lease to expire;
* it ``LISTEN``\\ s on ``omnicore_jobs``, which every enqueue and every release of leases
  ``NOTIFY``\\ s in its own transaction, so idle workers on every instance wake at once (the
  payload names the queue, ``jobs``, so only its workers go to the database; a reap's empty
  payload wakes every queue). A burst of notifications is one wake-up; and
  on ``omnicore_events``, which carries the id of each event appended to the log, so live
  subscribers on every instance get it; and on ``omnicore_settings``, which every change of a
  plugin's operator settings NOTIFYs, so each instance re-applies them at once; and on
  ``omnicore_catalog``, which every change of the plugin catalog NOTIFYs, so each instance
  loads the version in force at once.

A broken connection (the server restarted) is replaced in the background, the lock taken
again and the channel listened to again.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from omnicore.core.background import Background
from omnicore.storage.backend import Backend, Presence
from omnicore.storage.errors import StorageError
from omnicore.storage.postgres.schema import LIVENESS_KEY

__all__ = ["CATALOG", "CHANNEL", "EVENTS", "SETTINGS", "Liveness", "LockPresence"]

CHANNEL = "omnicore_jobs"
EVENTS = "omnicore_events"
SETTINGS = "omnicore_settings"
CATALOG = "omnicore_catalog"
_log = logging.getLogger("omnicore.storage")
#: Whether this session holds the liveness lock of a slot.
_MINE = ("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid() AND "
         "locktype = 'advisory' AND classid = CAST(%s AS oid) AND objid = CAST(%s AS oid) AND "
         "objsubid = 2 AND granted)")


class Liveness:
    """The instance's own connection: its liveness lock and the wake-up channel."""

    def __init__(self, url: str, connect_timeout_s: float) -> None:
        self._url = url
        self._timeout = connect_timeout_s
        self._slot: int | None = None
        self._callbacks: list[tuple[str | None, Callable[[], None]]] = []
        self._event_callbacks: list[Callable[[list[int]], None]] = []
        self._settings_callbacks: list[Callable[[], None]] = []
        self._catalog_callbacks: list[Callable[[], None]] = []
        #: Tags this storage's own NOTIFYs of events, so it does not deliver them twice.
        self.origin = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._conn: Any = None
        self._held: int | None = None  # the slot whose lock this connection holds
        #: Started by the first caller that needs it, never again once closed.
        self._listening = Background("omnicore-pg-liveness", once=True)

    def on_wakeup(self, callback: Callable[[], None], queue: str | None = None) -> None:
        """Call ``callback`` (from this object's thread) on a NOTIFY of the channel whose
        payload names ``queue``, or names none (a reap: every queue); None: on every one."""
        with self._lock:
            self._callbacks.append((queue, callback))
        self._ensure_thread()

    def on_event(self, callback: Callable[[list[int]], None]) -> None:
        """Call ``callback(event_ids)`` with the events other storage objects appended, a
        burst in one call."""
        with self._lock:
            self._event_callbacks.append(callback)
        self._ensure_thread()

    def on_settings(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when any instance changes a plugin's operator settings, and after
        every reconnect (a NOTIFY sent while the connection was down is lost)."""
        with self._lock:
            self._settings_callbacks.append(callback)
        self._ensure_thread()

    def on_catalog(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when any instance changes the plugin catalog, and after every
        reconnect (a NOTIFY sent while the connection was down is lost)."""
        with self._lock:
            self._catalog_callbacks.append(callback)
        self._ensure_thread()

    @property
    def slot(self) -> int | None:
        """The slot whose lock this connection holds, or takes again once it is back."""
        return self._slot

    def hold(self, slot: int) -> bool:
        """Take the liveness lock for ``slot`` now (and again after every reconnect): whether
        it is held on return (False: the connection did not come back in time; the thread
        goes on trying)."""
        with self._lock:
            self._slot = slot
            conn = self._conn
        if conn is not None:
            try:
                # Asked of the server, not of ``_held``: a connection it ended is not known
                # broken until used (a registration again took a lock already gone as held).
                # Taken only if not held already: one count of it, not one per registration.
                if not conn.execute(_MINE, (LIVENESS_KEY, slot)).fetchone()[0]:
                    conn.execute("SELECT pg_advisory_lock(%s, %s)", (LIVENESS_KEY, slot))
            except Exception:
                pass  # the thread reconnects and takes it again
            else:
                # Held now: not a wait for the listening thread's next turn, which a
                # callback it runs may hold up for seconds.
                with self._lock:
                    if self._conn is conn and self._slot == slot:
                        self._held = slot
        self._ensure_thread()
        deadline = time.monotonic() + self._timeout * 3
        while not self._holding() and time.monotonic() < deadline and \
                not self._listening.stopping.is_set():
            time.sleep(0.01)
        return self._holding()

    def _holding(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.closed and self._held == self._slot

    def release(self) -> None:
        with self._lock:
            self._slot = None
            conn = self._conn
        if conn is not None:
            try:
                conn.execute("SELECT pg_advisory_unlock_all()")
            except Exception:
                pass
            self._held = None

    def reachable(self) -> bool:
        """Whether this connection is up now: the server answers (it listens, so a lost
        server is seen within a quarter second). False before the first listener started."""
        conn = self._conn
        return conn is not None and not conn.closed and not conn.broken

    def _ensure_thread(self) -> None:
        self._listening.start(self._run)

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self._url, autocommit=True,
                               connect_timeout=max(1, int(self._timeout)))
        conn.execute(f"LISTEN {CHANNEL}")
        conn.execute(f"LISTEN {EVENTS}")
        conn.execute(f"LISTEN {SETTINGS}")
        conn.execute(f"LISTEN {CATALOG}")
        slot = self._slot
        if slot is not None:
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (LIVENESS_KEY, slot))
            self._held = slot
        return conn

    def _run(self) -> None:
        backoff = 0.1
        stopping = self._listening.stopping
        while not stopping.is_set():
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                try:
                    self._conn = conn = self._connect()
                    if backoff > 0.1:
                        _log.info("storage: the PostgreSQL connection is back")
                    backoff = 0.1
                    self._call(self._settings_callbacks)
                    self._call(self._catalog_callbacks)
                except Exception as exc:
                    if backoff == 0.1:
                        _log.warning("storage: cannot reach PostgreSQL (%s); retrying",
                                     " ".join(str(exc).split()))
                    stopping.wait(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
            try:
                if self._slot is not None and self._held != self._slot:
                    conn.execute("SELECT pg_advisory_lock(%s, %s)", (LIVENESS_KEY, self._slot))
                    self._held = self._slot
                # stop_after: hand the first notification on at once (the generator would
                # otherwise hold it until the timeout); then take every one already here
                # without waiting, so a burst of enqueues is one wake-up, not one each.
                woke: set[str] = set()
                events = []
                settings = catalog = False
                notes = list(conn.notifies(timeout=0.25, stop_after=1))
                if notes:
                    notes += conn.notifies(timeout=0)
                for note in notes:
                    if note.channel == EVENTS:
                        origin, _, eid = note.payload.partition(":")
                        if origin != self.origin and eid.isdecimal():
                            events.append(int(eid))
                    elif note.channel == SETTINGS:
                        settings = True
                    elif note.channel == CATALOG:
                        catalog = True
                    else:
                        woke.add(note.payload)
                if settings:
                    self._call(self._settings_callbacks)
                if catalog:
                    self._call(self._catalog_callbacks)
                for queue, callback in list(self._callbacks) if woke else []:
                    # Only the queue that has work wakes (a job enqueue must not send the
                    # workflow step workers to the database); an empty payload wakes all.
                    if queue is not None and queue not in woke and "" not in woke:
                        continue
                    try:
                        callback()
                    except Exception:
                        _log.exception("storage: a wake-up callback failed")
                for on_event in list(self._event_callbacks) if events else []:
                    try:
                        on_event(events)
                    except Exception:
                        _log.exception("storage: an event callback failed")
            except Exception:
                self._held = None
                try:
                    conn.close()
                except Exception:
                    pass

    @staticmethod
    def _call(callbacks: list[Callable[[], None]]) -> None:
        for callback in list(callbacks):
            try:
                callback()
            except Exception:
                _log.exception("storage: a settings or catalog callback failed")

    def close(self) -> None:
        self._listening.stop(5)
        conn = self._conn
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass


class LockPresence(Presence):
    """A registered host holds its liveness lock ``(LIVENESS_KEY, slot)`` on ``liveness``'s
    connection; a row whose lock is gone is dead without waiting for its heartbeat to age."""

    # A slot per row, from a sequence: the lock's second key.
    columns = ("slot",)

    def __init__(self, liveness: Liveness) -> None:
        self._liveness = liveness

    def claim(self, db: Backend, runtime_id: str) -> list[Any]:
        # The slot's lock is taken before the row exists: a row written first and locked
        # after was dead to every reaper for as long as the lock took (a loaded host's
        # registration was reaped before its first heartbeat, in a rolling upgrade).
        # The host registered again (declared dead and back, a retry): the slot this
        # connection holds already. A new one left the old one's lock held beside it for the
        # connection's life, one more at each registration of a flapping host. (A slot
        # another runtime id's row names, one storage registering several: a new one, the
        # other row's lock kept.)
        slot = self._liveness.slot
        if slot is None or db.read("SELECT 1 FROM instances WHERE slot = ? AND runtime_id <> ?",
                                   (slot, runtime_id)):
            slot = int(db.write_one("SELECT nextval('instance_slots')",
                                    returning=True)[1][0][0])
        if not self._liveness.hold(slot):
            # A row no lock keeps is dead to every other host at once: write none, fail as
            # an unreachable storage does (Membership tries again at its next tick).
            raise StorageError(f"storage {db.location}: cannot hold this host's liveness lock "
                               "(its own connection to the server is down)", path=db.location)
        return [slot]

    def removed(self) -> None:
        self._liveness.release()

    def dead(self, now: float, dead_after_s: float) -> tuple[str, list[Any]]:
        # A live host whose connection broke (the server restarted) takes its lock again
        # within a second: the grace keeps it from being declared dead in that window.
        grace = min(1.0, dead_after_s / 3)
        return (" OR (heartbeat_at < ? AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE "
                "l.locktype = 'advisory' AND l.classid = CAST(? AS oid) AND "
                "l.objid = CAST(instances.slot AS oid) AND l.objsubid = 2 AND l.granted))",
                [now - grace, LIVENESS_KEY])
