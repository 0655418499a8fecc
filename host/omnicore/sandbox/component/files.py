"""The ``fs`` grant's directories as a component's ``wasi:filesystem`` preopens.

Core modules reach a granted directory through omnicore's own WASI preview 1 file functions
(:mod:`omnicore.sandbox.wasi_fs`); a component's ``wasi:filesystem`` is wasmtime's, which
omnicore cannot replace from Python (its descriptors and streams are wasmtime resources). So
each instance gets the grant's directories as wasmtime preopens, with the grant's guest
paths, read-only unless ``write = true`` (wasmtime's ``FsPerms::ReadOnly`` refuses every
write, create, truncate, rename, link, symlink and delete with ``not-permitted``).

Paths are resolved by wasmtime through cap-std, beneath the preopened descriptor: an
absolute path, a ``..`` leaving the directory and a symlink pointing out of it are refused
(``not-permitted``). Unlike the core-module functions, a symlink that stays inside is
followed, and specs/components.md lists the other differences (no bound on open
descriptors of its own, a FIFO's open waits for a writer).

The runtime opens each granted directory once, with ``O_NOFOLLOW``, when it loads, and
every instance preopens that descriptor (``/proc/self/fd/N``): instances see exactly the
directory checked at load, even if the host path is later replaced by a symlink.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import wasmtime

from omnicore.errors import PluginLoadError
from omnicore.sandbox.wasi_fs import Preopen

__all__ = ["GrantedDirs"]


class GrantedDirs:
    """The granted directories of one component runtime, open for as long as it lives."""

    def __init__(self, plugin: str, preopens: Sequence[Preopen]) -> None:
        self.plugin = plugin
        self.preopens = tuple(preopens)
        self._fds: list[int] = []
        try:
            for p in self.preopens:
                self._fds.append(os.open(p.host, os.O_RDONLY | os.O_DIRECTORY |
                                         os.O_NOFOLLOW | os.O_CLOEXEC))
        except OSError as exc:
            self.close()
            raise PluginLoadError(
                f"plugin {plugin!r}: granted directory {exc.filename} cannot be opened "
                f"({exc.strerror}); fix grant.fs.dirs", plugin=plugin) from None

    def add_to(self, wasi: wasmtime.WasiConfig) -> None:
        """Preopen every granted directory in ``wasi`` (one new instance's config)."""
        for fd, p in zip(self._fds, self.preopens, strict=True):
            try:
                wasi.preopen_dir(f"/proc/self/fd/{fd}", p.guest, p.writable)
            except wasmtime.WasmtimeError:
                raise PluginLoadError(
                    f"plugin {self.plugin!r}: wasmtime could not preopen {p.host} as "
                    f"{p.guest!r}; check grant.fs.dirs", plugin=self.plugin) from None

    def close(self) -> None:
        """Close the directories (the runtime's last instance is gone)."""
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
