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
followed; specs/components.md lists the other differences (a FIFO's open waits for a
writer; the descriptors a guest holds are bounded by :mod:`.descriptors`, not by wasmtime).

In a writable directory wasmtime would let the guest *make* a symlink pointing out (a
relative target that climbs with ``..``): useless to the guest, which cannot follow it, but
a trap for whatever on the host walks the directory later. So, as for core modules,
``symlink-at`` answers ``not-permitted`` in every runtime with a writable directory.

The runtime opens each granted directory once, with ``O_NOFOLLOW``, when it loads, and
every instance preopens that descriptor (``/proc/self/fd/N``): instances see exactly the
directory checked at load, even if the host path is later replaced by a symlink.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import wasmtime
from wasmtime import component as cm

from omnicore.errors import PluginLoadError
from omnicore.sandbox.component.deny import NOT_PERMITTED, refuse
from omnicore.sandbox.wasi_fd import Preopen

__all__ = ["FILESYSTEM_TYPES", "GrantedDirs"]

#: ``wasi:filesystem/types`` as wasmtime's ``add_wasip2`` names it (wasmtime-py 50.0.1), to
#: re-open it exactly (deny.refuse). Components importing any 0.2.x are linked to it; a
#: wasmtime that moves it fails tests/sandbox/test_component_wasi.py.
FILESYSTEM_TYPES = "wasi:filesystem/types@0.2.12"


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

    @property
    def fds(self) -> tuple[int, ...]:
        """The runtime's descriptors of the granted directories."""
        return tuple(self._fds)

    def link(self, linker: cm.Linker) -> None:
        """Refuse ``symlink-at`` in ``linker`` when a granted directory is writable."""
        if any(p.writable for p in self.preopens):
            refuse(linker, FILESYSTEM_TYPES, "[method]descriptor.symlink-at", NOT_PERMITTED)

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
