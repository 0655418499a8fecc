"""The plugin folder: scanning, and hot reload with watchfiles.

Every ``*.wasm`` in the folder is a plugin; an optional sidecar next to it (``NAME.toml``,
``NAME.yaml`` or ``NAME.yml``, where NAME is the file name without ``.wasm``) holds the
operator's grants, config and limits (specs/abi.md §7), and ``NAME.json`` an Extism
plugin's manifest (specs/extism.md). The folder is watched: after each
batch of file events it is rescanned and compared with what is loaded, so a missed or merged
event can never leave the host out of step with the disk.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

from omnicore.config.watch import POLL_INTERVAL_S, Mode, follow
from omnicore.core import heap
from omnicore.errors import PluginNotFound
from omnicore.filestamp import Stamp, stamp
from omnicore.plugins.sidecar import SIDECAR_SUFFIXES

__all__ = [
    "POLL_INTERVAL_S",
    "Changes",
    "FolderTarget",
    "PluginFolder",
    "diff",
    "resolve_plugin_file",
    "scan",
    "sidecar_edited",
]

log = logging.getLogger("omnicore.plugins.folder")


def resolve_plugin_file(folder: Path, name: str, manifest_name: Callable[[Path], str | None]
                        ) -> Path:
    """Find the ``.wasm`` of plugin ``name`` in ``folder``.

    ``NAME.wasm`` wins; otherwise the file whose manifest names the plugin (found with
    ``manifest_name``). Raises :class:`PluginNotFound` listing what the folder holds.
    """
    direct = folder / f"{name}.wasm"
    if direct.is_file():
        return direct
    candidates = sorted(folder.glob("*.wasm")) if folder.is_dir() else []
    for path in candidates:
        try:
            if manifest_name(path) == name:
                return path
        except Exception:  # a broken neighbour must not hide the right file
            continue
    listing = ", ".join(p.stem for p in candidates) or "none"
    raise PluginNotFound(f"no plugin '{name}' in {folder} (plugins there: {listing})",
                         plugin=name)


# A file's fingerprint: cheap to take (stat only) and it changes whenever the wasm or any of
# its sidecars (or its Extism manifest) is written, created or removed: each file's suffix and
# stamp (omnicore.filestamp: size and mtime alone missed a deploy that keeps times).
Fingerprint = tuple[tuple[str, Stamp], ...]
_COMPANIONS = (*SIDECAR_SUFFIXES, ".json")


def _fingerprint(wasm: Path) -> Fingerprint | None:
    parts = []
    for path in (wasm, *(wasm.with_suffix(s) for s in _COMPANIONS)):
        try:
            st = path.stat()
        except FileNotFoundError:
            if path == wasm:
                return None
            continue
        parts.append((path.suffix, stamp(st)))
    return tuple(parts)


def scan(folder: Path) -> dict[Path, Fingerprint]:
    """Fingerprint every ``*.wasm`` directly in ``folder`` (not recursive)."""
    result: dict[Path, Fingerprint] = {}
    if not folder.is_dir():
        return result
    for path in sorted(folder.glob("*.wasm")):
        if path.name.startswith("."):
            continue  # editors' and atomic writers' temporary files
        fp = _fingerprint(path)
        if fp is not None:
            result[path] = fp
    return result


@dataclass(frozen=True)
class Changes:
    """What differs between two scans."""

    added: tuple[Path, ...] = ()
    changed: tuple[Path, ...] = ()
    removed: tuple[Path, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def diff(old: Mapping[Path, Fingerprint], new: Mapping[Path, Fingerprint]) -> Changes:
    """Compare two scans."""
    return Changes(
        added=tuple(sorted(p for p in new if p not in old)),
        changed=tuple(sorted(p for p in new if p in old and new[p] != old[p])),
        removed=tuple(sorted(p for p in old if p not in new)),
    )


def sidecar_edited(old: Fingerprint | None, new: Fingerprint | None) -> bool:
    """Whether a plugin's sidecar was written, created or removed between two fingerprints."""
    def sidecars(fp: Fingerprint | None) -> set[tuple[str, Stamp]]:
        return {part for part in fp or () if part[0] in SIDECAR_SUFFIXES}
    return sidecars(old) != sidecars(new)


class FolderTarget(Protocol):
    """What the folder drives: the PluginHost."""

    def load_file(self, path: Path) -> str:
        """Load ``path`` (with its sidecar); return the name it is registered under.

        Must not raise for a broken file: the host registers it as ``failed``.
        """

    def prepare_files(self, paths: Sequence[Path]) -> list[Path]:
        """Files are new (a start, a drop): prepare them to load (compile ahead, shown as
        ``compiling``); return the order to :meth:`load_file` them in."""

    def reload_file(self, name: str, path: Path) -> str:
        """Replace plugin ``name`` with the new contents of ``path``; return the new name."""

    def unload_file(self, name: str, path: Path) -> None:
        """Remove the plugin that came from ``path``."""


class PluginFolder:
    """Keeps a :class:`FolderTarget` in step with the ``*.wasm`` files of one folder."""

    def __init__(self, path: Path, target: FolderTarget, *, debounce_ms: int = 50,
                 step_ms: int = 20) -> None:
        self.path = path
        self._target = target
        self._debounce_ms = debounce_ms
        self._step_ms = step_ms
        self._seen: dict[Path, Fingerprint] = {}
        self._names: dict[Path, str] = {}
        self._sync_lock = threading.Lock()
        #: Called with (plugin, wasm path) after a sidecar edit re-linked that plugin.
        self.sidecar_observers: list[Callable[[str, Path], object]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loader: threading.Thread | None = None
        #: How the folder is followed: "idle" (not watched), "events" or "polling".
        self.mode: Literal["idle", "events", "polling"] = "idle"

    @property
    def files(self) -> dict[Path, str]:
        """Plugin file -> the name it is registered under."""
        return dict(self._names)

    def sync(self, shown: Callable[[], object] | None = None) -> Changes:
        """Rescan the folder and load, reload or unload what changed. ``shown`` is called
        once the new files show in the host (``compiling``), before they load."""
        with self._sync_lock:
            current = scan(self.path)
            changes = diff(self._seen, current)
            for path in changes.removed:
                name = self._names.pop(path, None)
                if name is not None:
                    self._guard(partial(self._target.unload_file, name, path), path)
            for path in changes.changed:
                name = self._names.get(path)
                if name is None:
                    self._add(path)
                else:
                    new = self._guard(partial(self._target.reload_file, name, path), path)
                    if new is not None:
                        self._names[path] = new
                        if sidecar_edited(self._seen.get(path), current.get(path)):
                            for observer in self.sidecar_observers:
                                self._guard(partial(observer, new, path), path)
            added: list[Path] = list(changes.added)
            # Even one new file shows as `compiling` while it compiles (seconds for a large
            # one): a call meanwhile hears "still compiling", not "no such plugin".
            if added:
                added = self._guard(partial(self._target.prepare_files, added), added[0]) \
                    or added
            if shown is not None:
                shown()
            for path in added:
                if self._stop.is_set():
                    break  # stopped (the host closes): load nothing more
                self._add(path)
            self._seen = current
        if changes.added or changes.changed or changes.removed:
            # What the old versions held is garbage now, what the new ones hold stays: a host
            # process that manages its heap collects and freezes here (core/heap.py).
            heap.settle()
        return changes

    def sync_in_background(self, done: Callable[[], object]) -> None:
        """The first :meth:`sync` on a thread of its own (a host starting): return once the
        folder's files show in the host, ``compiling``, and call ``done`` when all loaded."""
        shown = threading.Event()

        def load() -> None:
            try:
                self._guard(partial(self.sync, shown.set), self.path)
            finally:
                shown.set()
                done()

        self._loader = threading.Thread(target=load, name=f"omnicore-load:{self.path}",
                                        daemon=True)
        self._loader.start()
        shown.wait()

    @property
    def loading(self) -> bool:
        """Whether :meth:`sync_in_background`'s load is still under way."""
        return self._loader is not None and self._loader.is_alive()

    def refresh(self, path: Path) -> bool:
        """Reload the plugin of ``path`` now, though its files did not change (its settings
        elsewhere did), in turn with the folder's own changes; False if the folder does not
        hold ``path``."""
        with self._sync_lock:
            name = self._names.get(path)
            if name is None:
                return False
            new = self._guard(partial(self._target.reload_file, name, path), path)
            if new is not None:
                self._names[path] = new
            return True

    def _add(self, path: Path) -> None:
        name = self._guard(partial(self._target.load_file, path), path)
        if name is not None:
            self._names[path] = name

    def _guard(self, action: Callable[[], Any], path: Path) -> Any:
        # The host reports broken files itself; this only keeps a bug in one file's
        # handling from stopping the watcher for all the others.
        try:
            return action()
        except Exception:
            log.exception("plugin folder: handling %s failed", path)
            return None

    def start(self) -> None:
        """Start watching in a daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name=f"omnicore-watch:{self.path}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and wait for the watcher thread."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        loader = self._loader
        if loader is not None and loader is not threading.current_thread():
            loader.join(timeout=60)  # the file it loads now (one compile), nothing after

    @property
    def watching(self) -> bool:
        """Whether the watcher thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def _watch(self) -> None:
        # Every wake-up (events, or the 500 ms timeout) rescans the folder: the rescan is a
        # few stat() calls, it catches files written before the watcher was armed.
        def set_mode(mode: Mode) -> None:
            self.mode = mode

        follow(self.path, lambda name: name.endswith((".wasm", *_COMPANIONS)), self.sync,
               self._stop, label=f"plugin folder {self.path}", debounce_ms=self._debounce_ms,
               step_ms=self._step_ms, mode=set_mode)
