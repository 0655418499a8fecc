"""The app's secrets, encrypted at rest with AES-256-GCM (``cryptography``).

Each secret is one sealed row of the app's storage (:mod:`omnicore.storage.secret_rows`,
which never sees a key or a plain value): a fresh 96-bit nonce, the ciphertext (which
carries GCM's tag) and the id of the key that sealed it. The secret's name is the associated
data, so a row copied under another name does not decrypt. The key is 32 random bytes:

* ``OMNICORE_SECRET_KEY`` (base64), when set — for containers and secret managers; else
* ``<data_dir>/secret.key`` (base64), created with mode 0600 on first use; a key file that
  group or others can read is refused.

Rotation (:meth:`SecretStore.rotate`) re-encrypts every row under a new key in one
transaction. With a key file, the new key is written to ``secret.key.new`` before that
transaction and renamed over ``secret.key`` after it; rows name their key, so a crash between
the two leaves a store that still opens (the pending key is picked up). Values are never
logged, never part of an error message, and never returned by listing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from omnicore.errors import ConfigError
from omnicore.storage.errors import StorageError
from omnicore.storage.secret_rows import Sealed, SecretRows

__all__ = ["ENV_KEY", "KEY_FILE", "MAX_SECRET_BYTES", "SecretStore", "check_name", "new_key"]

ENV_KEY = "OMNICORE_SECRET_KEY"
KEY_FILE = "secret.key"
#: A secret is a credential, not a payload.
MAX_SECRET_BYTES = 64 * 1024
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def check_name(name: object) -> str:
    """``name`` if it is a valid secret name, else ConfigError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"bad secret name {name!r}: use 1-128 letters, digits, '_', '.', '-'",
                          key="secrets", value=name)
    return name


def new_key() -> str:
    """A fresh key, base64 (what ``OMNICORE_SECRET_KEY`` and the key file hold)."""
    return base64.b64encode(os.urandom(32)).decode()


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), altchars=b"-_" if "-" in text or "_" in text
                               else None, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{where} must be 32 random bytes in base64 (make one with: python -c "
                          "\"import base64, os; print(base64.b64encode(os.urandom(32))"
                          ".decode())\")", key=where)
    return key


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"omnicore-secret-key\0" + key).hexdigest()[:16]


def _read_key_file(path: Path) -> bytes:
    st = path.stat()
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"secret key file {path} can be read by other users (mode "
                          f"{stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}",
                          source=str(path))
    return _decode_key(path.read_text(encoding="ascii", errors="replace"), str(path))


def _write_key_file(path: Path, key: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(base64.b64encode(key).decode() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o600)


class SecretStore:
    """Named secrets of one app, encrypted in its database. Thread-safe."""

    def __init__(self, rows: SecretRows, data_dir: str | Path,
                 environ: Mapping[str, str] | None = None) -> None:
        self._rows = rows
        self.key_path = Path(data_dir) / KEY_FILE
        self._environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._aead: AESGCM | None = None
        self._key_id = ""

    # -- the key ------------------------------------------------------------------------

    @property
    def key_source(self) -> str:
        """Where the key comes from: ``env`` (OMNICORE_SECRET_KEY) or the key file's path."""
        return "env" if self._environ.get(ENV_KEY) else str(self.key_path)

    def _cipher(self) -> tuple[AESGCM, str]:
        if self._aead is None:
            key = self._load_key()
            self._aead, self._key_id = AESGCM(key), _key_id(key)
        return self._aead, self._key_id

    def _load_key(self) -> bytes:
        env = self._environ.get(ENV_KEY)
        if env:
            return _decode_key(env, ENV_KEY)
        pending = self.key_path.with_name(KEY_FILE + ".new")
        if pending.exists():
            # A rotation committed its rows but may not have renamed its key into place.
            key = _read_key_file(pending)
            if self._rows.uses_key(_key_id(key)):
                os.replace(pending, self.key_path)
                return key
            pending.unlink()
        if self.key_path.exists():
            return _read_key_file(self.key_path)
        key = os.urandom(32)
        tmp = self.key_path.with_name(KEY_FILE + ".tmp")
        _write_key_file(tmp, key)
        try:
            os.link(tmp, self.key_path)  # fails if another process created it meanwhile
        except FileExistsError:
            key = _read_key_file(self.key_path)
        finally:
            tmp.unlink(missing_ok=True)
        return key

    # -- secrets ------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The names of the secrets that are set, sorted (never their values)."""
        return self._rows.names()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._rows.get(name) is not None

    def get(self, name: str) -> bytes | None:
        """The secret's value, or None when it is not set."""
        sealed = self._rows.get(name)
        if sealed is None:
            return None
        key_id, nonce, ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
        with self._lock:
            aead, current = self._cipher()
        if key_id != current:
            raise StorageError(f"secret {name!r} was sealed with key {key_id}, but the key in "
                               f"use ({self.key_source}) is {current}: restore the key it was "
                               "written with, or set the secret again", path=self.key_path)
        try:
            return aead.decrypt(nonce, ciphertext, self._aad(name))
        except InvalidTag:
            raise StorageError(f"secret {name!r} does not decrypt: its row was altered or "
                               "copied from another name; set it again",
                               path=self.key_path) from None

    def text(self, name: str) -> str | None:
        """The secret as text (UTF-8), or None when it is not set."""
        value = self.get(name)
        return None if value is None else value.decode("utf-8", "replace")

    def set(self, name: str, value: bytes | str) -> None:
        """Set (or replace) ``name``."""
        check_name(name)
        data = value.encode() if isinstance(value, str) else bytes(value)
        if len(data) > MAX_SECRET_BYTES:
            raise ConfigError(f"secret {name!r} is {len(data)} bytes; the limit is "
                              f"{MAX_SECRET_BYTES}", key="secrets", value=name)
        with self._lock:
            aead, key_id = self._cipher()
        nonce = os.urandom(12)
        sealed = aead.encrypt(nonce, data, self._aad(name))
        self._rows.put(name, Sealed(key_id, nonce, sealed), time.time())

    def delete(self, name: str) -> bool:
        """Remove ``name``; whether it was set."""
        return self._rows.delete(name)

    def rotate(self, new: str | None = None) -> str:
        """Re-encrypt every secret under a new key; return the new key's id.

        With a key file, ``new`` may be omitted (a random key is made and stored). With
        ``OMNICORE_SECRET_KEY``, pass the new key (base64) and set the variable to it
        afterwards: the old one no longer opens the store.
        """
        key = _decode_key(new, "the new key") if new is not None else os.urandom(32)
        from_env = bool(self._environ.get(ENV_KEY))
        if from_env and new is None:
            raise ConfigError(f"the key comes from {ENV_KEY}: pass the new key (base64) to "
                              "rotate to, then set the variable to it", key=ENV_KEY)
        with self._lock:
            old, old_id = self._cipher()
            new_aead, new_id = AESGCM(key), _key_id(key)
            pending = self.key_path.with_name(KEY_FILE + ".new")
            if not from_env:
                _write_key_file(pending, key)

            def reseal(name: str, sealed: Sealed) -> Sealed:
                if sealed.key_id != old_id:
                    raise StorageError(f"secret {name!r} is sealed with key {sealed.key_id}, "
                                       f"not the current key {old_id}; nothing was rotated",
                                       path=self.key_path)
                plain = old.decrypt(sealed.nonce, sealed.ciphertext, self._aad(name))
                fresh = os.urandom(12)
                return Sealed(new_id, fresh, new_aead.encrypt(fresh, plain, self._aad(name)))

            try:
                self._rows.reseal(reseal)
            except BaseException:
                pending.unlink(missing_ok=True)
                raise
            if not from_env:
                os.replace(pending, self.key_path)
            self._aead, self._key_id = new_aead, new_id
        return new_id

    @staticmethod
    def _aad(name: str) -> bytes:
        return b"omnicore-secret\0" + name.encode()

    def __repr__(self) -> str:  # never the values
        return f"<SecretStore key={self.key_source}>"
