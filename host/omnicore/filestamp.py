"""A file's stamp: what changes whenever the file is written, created or replaced, read from
one ``stat``. Every watcher of what an operator deploys (plugin folders and sidecars, the
app's config, workflow files, MCP tool rules, routes) compares files by it.

Size and modification time alone are not that: a deploy that keeps files' times (``rsync
-t``, ``cp -p``, ``tar``) writes a new text of the same length with the old time, in place
or renamed over the old file, and the change went unseen (a revoked grant kept being
served). The inode (a file renamed over another is another inode) and the change time,
which no writer can set and every write moves, close that. A ``chmod`` moves the change time
too: a watcher reloads once for nothing, the price of never missing a write.
"""

from __future__ import annotations

import os

__all__ = ["Stamp", "stamp", "stamp_of"]

#: ``(size, mtime_ns, ctime_ns, inode)``.
Stamp = tuple[int, int, int, int]


def stamp(st: os.stat_result) -> Stamp:
    """The stamp of a file from its ``stat``."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def stamp_of(path: str | os.PathLike[str]) -> Stamp | None:
    """The stamp of the file at ``path``; None when it cannot be read (missing, say)."""
    try:
        return stamp(os.stat(path))
    except OSError:
        return None
