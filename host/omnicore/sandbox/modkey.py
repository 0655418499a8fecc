"""The key that authenticates compiled code: what lets a host trust a module-cache entry.

Whoever can write the module cache (a folder hosts share) could write a checksum too, so an
entry is trusted only with an HMAC made by a key that folder does not hold
(:mod:`omnicore.sandbox.modcache`). Where a host gets it, first found wins:

1. ``OMNICORE_MODULE_KEY`` (base64 of 32 bytes): a secret manager's, an image build's, the
   tests' (every host given it trusts what the others compiled);
2. the app's secret store, secret ``omnicore.module-key`` (:func:`from_store`): hosts of one
   cluster share its database and its sealing key, so every host of the cluster has the same
   module key with no operator step; the first host to need one makes it;
3. a key file outside the cache folder, made 0600 on first use (:func:`from_file`): the
   app's ``<data_dir>/module.key`` when its store cannot be read, and the user's
   (``$XDG_DATA_HOME/omnicore/module.key``) for a host with no app (``omnicore call`` of a
   bare file, ``omnicore inspect``, the toolchains).

A key's id (a digest of the key, never the key) is stored beside each entry and covered by
its MAC: after a rotation (a new key set, or the secret deleted so the next host makes one),
every entry of the old key is recompiled, not trusted.

A container image's baked modules (``sandbox.baked_dir``) are another matter: a folder of the
image's own, read-only, that no host writes, with the key their build made beside it
(:func:`baked_key`, ``<baked_dir>.key``). That key authenticates the entries of that folder
alone, never the module cache a cluster shares, which keeps the hosts' key above.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from omnicore.errors import ConfigError, OmniError

__all__ = ["ENV_KEY", "KEY_FILE", "SECRET_NAME", "KeyStore", "ModuleKey", "app_key",
           "baked_key", "baked_key_path", "from_env", "from_file", "from_store", "from_text",
           "user_key", "user_key_path"]

ENV_KEY = "OMNICORE_MODULE_KEY"
SECRET_NAME = "omnicore.module-key"
KEY_FILE = "module.key"

_log = logging.getLogger("omnicore.sandbox")


@dataclass(frozen=True)
class ModuleKey:
    """A secret that authenticates compiled code, with where it came from."""

    secret: bytes = field(repr=False)
    #: Where it came from, for messages: ``env``, ``secret store`` or a file's path.
    source: str = ""

    @property
    def id(self) -> str:
        """8 bytes naming the key (a digest of it): what an entry records it was made with."""
        return hashlib.sha256(b"omnicore-module-key\0" + self.secret).hexdigest()[:16]

    @classmethod
    def new(cls, source: str = "") -> ModuleKey:
        return cls(os.urandom(32), source)

    def encoded(self) -> str:
        """The key as ``OMNICORE_MODULE_KEY`` and a key file hold it (base64)."""
        return base64.b64encode(self.secret).decode()


class KeyStore(Protocol):
    """Where an app keeps secrets (``omnicore.storage.secrets.SecretStore``)."""

    def get(self, name: str) -> bytes | None: ...

    def set(self, name: str, value: bytes | str) -> None: ...


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{where} must be 32 random bytes in base64 (make one with: python3 "
                          "-c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())')",
                          key=where)
    return key


def from_text(text: str, source: str) -> ModuleKey:
    """The key ``text`` holds in base64 (a key file's content); ConfigError naming ``source``
    when it is not 32 bytes."""
    return ModuleKey(_decode(text, source), source)


def from_env(environ: Mapping[str, str] | None = None) -> ModuleKey | None:
    """The key ``OMNICORE_MODULE_KEY`` holds, None when unset; ConfigError when malformed."""
    text = (os.environ if environ is None else environ).get(ENV_KEY)
    return ModuleKey(_decode(text, ENV_KEY), "env") if text else None


def from_store(store: KeyStore) -> ModuleKey:
    """The key in ``store`` (secret ``omnicore.module-key``), made and stored when absent.

    Two hosts making one at once both store theirs and read back the one that stayed; one
    that read before the other wrote keeps its own until it restarts, and the entries each
    writes meanwhile are recompiled by the other (logged): a cost, never a trust.
    """
    held = store.get(SECRET_NAME)
    if held is None:
        store.set(SECRET_NAME, ModuleKey.new().encoded())
        held = store.get(SECRET_NAME)
        assert held is not None
        _log.info("made the compiled-module key (secret %s)", SECRET_NAME)
    return ModuleKey(_decode(held.decode("ascii", "replace"), f"secret {SECRET_NAME}"),
                     "secret store")


def from_file(path: Path) -> ModuleKey:
    """The key in the file ``path``, made 0600 on first use; a file others can read or
    write is refused (ConfigError)."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _private_folder(path.parent)
    made = ModuleKey.new(str(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # (ours from a crashed run, or planted: never written into)
    # O_EXCL: a file planted under the temporary name (readable by its planter) is never
    # written into, so the key it would leak is never made.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(made.encoded() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails when another process made it meanwhile: take theirs
        except FileExistsError:
            return _read(path)
    finally:
        tmp.unlink(missing_ok=True)
    return made


def _private_folder(folder: Path) -> None:
    """Refuse to make a key in a folder another user may write: they could swap the file
    between its making and its use (ConfigError)."""
    st = folder.stat()
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise ConfigError(f"the compiled-module key's folder {folder} can be written by other "
                          f"users (mode {stat.S_IMODE(st.st_mode):04o}): `chmod go-w {folder}`, "
                          "or set OMNICORE_MODULE_KEY", source=str(folder))


def _read(path: Path) -> ModuleKey:
    # O_NONBLOCK: a FIFO planted as the key file would hold the host's start for ever.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"the compiled-module key file {path} is not a regular file: "
                              "delete it (a new key is made and every compiled module "
                              "recompiled once)", source=str(path))
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"the compiled-module key file {path} is not this user's alone "
                              f"(uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}): "
                              f"`chmod 600 {path}` it, or delete it (a new key is made and "
                              "every compiled module recompiled once)", source=str(path))
        return ModuleKey(_decode(fh.read(256), str(path)), str(path))  # (a key is 45 bytes)


def app_key(store: Callable[[], KeyStore], data_dir: Path) -> ModuleKey:
    """An app's key: ``OMNICORE_MODULE_KEY``, else its secret store's (``store()``, opened
    only when needed), else, when the store cannot be read, ``<data_dir>/module.key``."""
    key = from_env()
    if key is not None:
        return key
    try:
        return from_store(store())
    except OmniError as exc:  # a store sealed with another key, a database down
        path = data_dir / KEY_FILE
        _log.warning("the compiled-module key is not in the secret store (%s); using %s, "
                     "this host's alone", exc, path)
        return from_file(path)


def user_key_path() -> Path:
    """The key file of a host with no app: ``$XDG_DATA_HOME/omnicore/module.key``, else
    ``~/.local/share/omnicore/module.key``."""
    home = os.environ.get("XDG_DATA_HOME")
    base = Path(home) if home else Path.home() / ".local" / "share"
    return base / "omnicore" / KEY_FILE


def user_key() -> ModuleKey:
    """The key of a host with no app: ``OMNICORE_MODULE_KEY``, else :func:`user_key_path`."""
    return from_env() or from_file(user_key_path())


def baked_key_path(folder: Path) -> Path:
    """Where the key of the baked modules in ``folder`` lies: ``<folder>.key``, beside the
    folder, not in it."""
    return folder.with_name(folder.name + ".key")


def baked_key(folder: Path) -> ModuleKey | None:
    """The key that authenticates the baked modules in ``folder`` (``sandbox.baked_dir``), read
    from :func:`baked_key_path`; None when there is none. It may be readable by anyone (it is
    in the image), but the folder, the file and its entries must belong to root or this user
    and be writable by no one else: a key that anyone could replace, or a folder anyone could
    fill, authenticates nothing (ConfigError)."""
    path = baked_key_path(folder)
    for what in (folder, path):
        try:
            st = os.stat(what, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode) or st.st_uid not in (0, os.geteuid()) \
                or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(f"the baked compiled modules' {what} is not root's or this "
                              f"user's alone to write (uid {st.st_uid}, mode "
                              f"{stat.S_IMODE(st.st_mode):04o}): whoever can write it can run "
                              "code in this host", source=str(what))
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"the baked modules' key {path} is not a regular file",
                              source=str(path))
        return ModuleKey(_decode(fh.read(256), str(path)), str(path))
