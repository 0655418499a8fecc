"""Definition files written by the app (the console's editor): never over a file that changed
on disk since it was read, and never without keeping what was there.

A file is named by the sha256 of its bytes (:func:`digest`). :meth:`WorkflowFiles.write`
takes the digest its writer read and refuses (:class:`FileChanged`) when the file holds
anything else — an edit by hand, another admin's save — so a save never overwrites silently.
The text it replaces is kept in ``.history/<file stem>/`` beside the files (a dot-folder the
folder scan skips), newest last, and :meth:`restore` writes one back through the same check.
Writes go to a dot-file first and are renamed over the file, so the folder scan never reads
half a file.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

from omnicore.workflows.definition import read_definition
from omnicore.workflows.errors import FileChanged, WorkflowError

__all__ = ["HISTORY", "WorkflowFiles", "digest"]

HISTORY = ".history"
#: Versions kept per file; the oldest go first.
KEEP = 50


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class WorkflowFiles:
    """The definition files of one folder: read with their digest, written with the check."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    def read(self, path: Path) -> tuple[str, str]:
        """``(text, digest)`` of ``path``; ``("", "")`` when there is no such file."""
        try:
            text = read_definition(path, path.name)
        except FileNotFoundError:
            return "", ""
        return text, digest(text)

    def _current(self, path: Path) -> str | None:
        try:
            return digest(read_definition(path, path.name))
        except FileNotFoundError:
            return None

    def write(self, path: Path, text: str, expected: str | None) -> str:
        """Write ``text`` to ``path`` if it still has digest ``expected`` (None: if it does
        not exist); the previous text goes to the history. The new digest."""
        if path.parent.resolve() != self.folder.resolve():
            raise WorkflowError(f"{path} is not in the workflows folder {self.folder}")
        with self._lock:
            current = self._current(path)
            if current != expected:
                what = "was created" if expected is None else (
                    "was removed" if current is None else "changed")
                raise FileChanged(f"{path.name} {what} on disk since it was opened (by hand, "
                                  "or by another save): nothing was written. Read it again, "
                                  "then make the change on what it holds now",
                                  current=current)
            self.folder.mkdir(parents=True, exist_ok=True)
            if current is not None:
                self._keep(path)
            tmp = path.with_name(f".{path.name}.saving")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        return digest(text)

    def _keep(self, path: Path) -> None:
        folder = self.folder / HISTORY / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        text = path.read_text(encoding="utf-8")
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{stamp}-{time.time_ns() % 1_000_000_000:09d}-{digest(text)[:12]}{path.suffix}"
        (folder / name).write_text(text, encoding="utf-8")
        for old in sorted(folder.iterdir())[:-KEEP]:
            old.unlink()

    def history(self, path: Path) -> list[dict[str, object]]:
        """The kept versions of ``path``, newest first: ``{"id", "at", "digest", "size"}``."""
        folder = self.folder / HISTORY / path.stem
        if not folder.is_dir():
            return []
        out: list[dict[str, object]] = []
        for item in sorted(folder.iterdir(), reverse=True):
            st = item.stat()
            out.append({"id": item.name, "at": st.st_mtime, "size": st.st_size,
                        "digest": digest(item.read_text(encoding="utf-8"))})
        return out

    def version(self, path: Path, version_id: str) -> str:
        """The text of kept version ``version_id`` of ``path``."""
        kept = self.folder / HISTORY / path.stem / version_id
        if "/" in version_id or version_id.startswith(".") or not kept.is_file():
            raise WorkflowError(f"no kept version {version_id[:80]!r} of {path.name}")
        return kept.read_text(encoding="utf-8")

    def restore(self, path: Path, version_id: str, expected: str | None) -> tuple[str, str]:
        """Write kept version ``version_id`` back (the text it replaces is kept in turn):
        ``(text, digest)``."""
        text = self.version(path, version_id)
        return text, self.write(path, text, expected)
