"""Credentials for a registry and the answer to its ``WWW-Authenticate`` challenge.

Where credentials come from, first found wins: the ones the caller gives (``--username`` and
``--password-stdin``), then the Docker config file (``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``, or ``registry.docker_config``): its ``auths`` entry for the
registry (``auth`` as base64 ``user:password``, or ``username``/``password``, or an
``identitytoken``), else its credential helper (``credHelpers`` for the registry, else
``credsStore``: ``docker-credential-NAME get``). None found: the request goes anonymous.

A challenge is answered as the distribution spec's token flow says: ``Basic`` with the
credentials; ``Bearer realm=...,service=...,scope=...`` by asking the realm for a token (with
the credentials as Basic, or the identity token as an OAuth2 refresh token), then sending it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from omnicore.core.jsoncodec import loads_object

__all__ = ["Challenge", "Credentials", "docker_config_path", "find_credentials",
           "parse_challenge"]

# The name Docker's own config keeps Docker Hub's credentials under.
_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io",
             "registry-1.docker.io")
_HELPER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Credentials:
    """A user name and password, or an identity (refresh) token; ``source`` says where from
    (for messages, never the secret)."""

    username: str = ""
    password: str = ""
    identity_token: str = ""
    source: str = "given"

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:  # never show the secret
        return f"Credentials(username={self.username!r}, source={self.source!r})"


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate``: its scheme (lowercase) and parameters."""

    scheme: str
    params: Mapping[str, str]


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> Challenge | None:
    """``Bearer realm="https://auth",service="reg",scope="repository:x:pull"`` -> Challenge;
    None when the header is empty or not one this client answers (Basic or Bearer)."""
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("basic", "bearer"):
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
        pos = m.end()
    return Challenge(scheme, params)


def docker_config_path(explicit: Path | None = None) -> Path:
    """The Docker config file this client reads."""
    if explicit is not None:
        return explicit
    folder = os.environ.get("DOCKER_CONFIG")
    return (Path(folder) if folder else Path.home() / ".docker") / "config.json"


def find_credentials(registry: str, *, config: Path | None = None) -> Credentials | None:
    """The credentials the Docker config file holds for ``registry`` (``host[:port]``), or
    None. A malformed file is ValueError naming it."""
    path = docker_config_path(config)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"cannot read the Docker config {path}: {exc.strerror}") from None
    doc = loads_object(raw, f"the Docker config {path}")
    keys = _HUB_KEYS if registry in _HUB_KEYS else (registry, f"https://{registry}",
                                                      f"http://{registry}")
    auths: dict[str, object] = doc["auths"] if isinstance(doc.get("auths"), dict) else {}
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict):
            found = _from_entry(entry, f"{path} auths[{key!r}]")
            if found is not None:
                return found
    helpers: dict[str, object] = doc["credHelpers"] \
        if isinstance(doc.get("credHelpers"), dict) else {}
    helper = next((str(helpers[k]) for k in keys if isinstance(helpers.get(k), str)), None)
    if helper is None and isinstance(doc.get("credsStore"), str):
        helper = doc["credsStore"]
    if helper:
        return _from_helper(helper, keys[0], path)
    return None


def _from_entry(entry: Mapping[str, object], source: str) -> Credentials | None:
    token = entry.get("identitytoken")
    user, password = entry.get("username"), entry.get("password")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, _, password = base64.b64decode(auth).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"{source}.auth is not base64 of user:password") from None
    if isinstance(token, str) and token:
        return Credentials(username=str(user or ""), identity_token=token, source=source)
    if isinstance(user, str) and user:
        return Credentials(user, str(password or ""), source=source)
    return None


def _from_helper(helper: str, registry: str, path: Path) -> Credentials | None:
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run([program, "get"], input=registry.encode(), capture_output=True,
                              timeout=_HELPER_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise ValueError(f"the Docker config {path} names the credential helper {helper!r} "
                         f"but {program} is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise ValueError(f"the credential helper {program} did not answer within "
                         f"{_HELPER_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        return None  # "credentials not found in native keychain": go anonymous
    try:
        doc = json.loads(done.stdout)
        user, secret = str(doc.get("Username", "")), str(doc.get("Secret", ""))
    except (ValueError, AttributeError):
        raise ValueError(f"the credential helper {program} answered something that is not "
                         "its JSON") from None
    source = f"{program} (from {path})"
    if user == "<token>":
        return Credentials(identity_token=secret, source=source)
    return Credentials(user, secret, source=source) if user or secret else None
