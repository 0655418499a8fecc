"""Talking to a running host through its console's REST API (stdlib HTTP only).

``omnicore call NAME --app DIR`` finds the host serving DIR from ``<data_dir>/console.json``,
which ``omnicore run`` writes while its console is up (the URL and a per-process admin token,
readable only by its owner) and removes on stop. ``--remote URL`` names a host explicitly;
its token comes from ``$OMNICORE_TOKEN`` (create one on the console's Users page).

A command that talks to a running host finds it with :func:`running_host`, which reads the one
key it needs (``data_dir``) from omnicore.yaml without the config schema: such a command then
imports no host code (pydantic, storage, sandbox), and answers in about the interpreter's own
start-up time. Only when no host answers does the caller load the full config.

A console file is trusted only for the app folder it belongs to (:mod:`omnicore.appid`): the
id of the data dir given (``<data_dir>/app-id.json``, made for that very folder), the
console file's ``app_id`` and the id the host answers on ``/healthz`` must be one. A folder
copied from a running app (its ``console.json`` names the original's URL and token) has no
id of its own until its own host starts, so the CLI given it never reaches the original: it
says so on stderr and the command runs without a host (embedded, on the copy's own data).
The id is public (``app-id.json`` is 0644, ``/healthz`` answers it), so the host must also
prove it holds the folder's secret: an HMAC of a random challenge (:func:`omnicore.appid.
proof`); the health check is sent without the admin token.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnicore.errors import InputTooLarge, OmniError, PluginError

__all__ = ["TOKEN_ENV", "Remote", "RemoteError", "data_dir_of", "find_running",
           "running_host"]

TOKEN_ENV = "OMNICORE_TOKEN"
CONSOLE_FILE = "console.json"
CONFIG_FILE = "omnicore.yaml"
#: Inputs over this are held against the plugin's limit before they are sent.
CHECKED_INPUT_BYTES = 1 << 20


class RemoteError(PluginError):
    """The running host answered with an error (its type and message are kept)."""

    def __init__(self, message: str, *, type: str = "Error", status: int = 0,
                 plugin: str | None = None, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message, plugin=plugin)
        self.type = type
        self.status = status
        #: A ``NeedsGrant``'s capabilities the host's grants lack.
        self.missing = missing


@dataclass(frozen=True)
class Remote:
    url: str
    token: str | None

    def request(self, method: str, path: str, body: Any = None,
                timeout: float = 60.0) -> Any:
        # Here, not at the top: `omnicore call` asks whether a host runs on every call, and
        # urllib.request (http.client, email, ssl) is only needed when one does.
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw)["error"]
                raise RemoteError(f"{err['type']}: {err['message']} (from {self.url})",
                                  type=err["type"], status=exc.code,
                                  plugin=err.get("plugin"),
                                  missing=tuple(map(str, err.get("missing") or ()))) from None
            except (ValueError, KeyError, TypeError):
                raise RemoteError(f"{self.url} answered HTTP {exc.code}",
                                  status=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if data is not None and isinstance(reason, BrokenPipeError | ConnectionResetError):
                # The host answered (and closed) before it took the whole body: a size cap.
                raise OmniError(f"the host at {self.url} refused the request body of "
                                f"{len(data)} bytes before reading it (over a size limit: a "
                                "plugin's limits.max_input_bytes, or console.max_upload_bytes)"
                                ) from None
            raise OmniError(f"cannot reach the host at {self.url}: {reason}") from None
        return json.loads(raw) if raw else None

    def alive(self) -> bool:
        return self.health() is not None

    def health(self, challenge: str | None = None) -> dict[str, Any] | None:
        """What the host answers on ``/healthz`` (its ``app_id``, and with ``challenge`` its
        ``proof``); None: no answer. Asked without the token: a host is not yet known to be
        this folder's when it is asked."""
        path = "/healthz" if challenge is None else f"/healthz?challenge={challenge}"
        try:
            doc = Remote(self.url, None).request("GET", path, timeout=2.0)
        except OmniError:
            return None
        return doc if isinstance(doc, dict) else {}

    def call(self, name: str, handler: str, data: bytes) -> bytes:
        if len(data) > CHECKED_INPUT_BYTES:
            # Said before sending: a host refuses a body over the cap before reading it, and
            # a client still sending sees only a broken pipe.
            limits = self.plugin(name).get("limits") or {}
            cap = limits.get("max_input_bytes")
            if isinstance(cap, int) and len(data) > cap:
                raise InputTooLarge(
                    f"plugin '{name}' handler '{handler}': input of {len(data)} bytes exceeds "
                    f"limits.max_input_bytes ({cap}) on the host at {self.url}; raise it with "
                    f"`omnicore settings limits {name} max_input_bytes=N`, in its sidecar or "
                    f"in plugins.{name}.limits (omnicore.yaml)", plugin=name, handler=handler,
                    limit="max_input_bytes", value=cap)
        doc = self.request("POST", f"/api/v1/plugins/{urllib.parse.quote(name, safe='')}"
                                   "/invoke",
                           {"handler": handler, "input": base64.b64encode(data).decode(),
                            "encoding": "base64"})
        out = str(doc["output"])
        return base64.b64decode(out) if doc.get("encoding") == "base64" else out.encode()

    def plugin(self, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.request(
            "GET", f"/api/v1/plugins/{urllib.parse.quote(name, safe='')}")
        return doc

    def logs(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        doc = self.request("GET", f"/api/v1/plugins/{urllib.parse.quote(name, safe='')}"
                                  f"/logs?limit={limit}")
        return list(doc["items"])


def find_running(data_dir: Path) -> Remote | None:
    """The host serving the app whose data dir is ``data_dir``, if its console is up: the
    one host of an embedded database, or any live one of the hosts of a shared database that
    share this data dir (each writes its file under ``instances/<runtime id>/``). A host
    that does not serve this very folder (module docstring) is not used: one line on stderr
    says which and that the command runs without it."""
    import hmac
    import secrets

    from omnicore.appid import app_id, app_key, proof

    own = app_id(data_dir)
    key = app_key(data_dir, own) if own is not None else None
    for path in [data_dir / CONSOLE_FILE, *sorted(data_dir.glob(f"instances/*/{CONSOLE_FILE}"))]:
        try:
            doc = json.loads(path.read_text())
            url, token, pid = str(doc["url"]), str(doc["token"]), int(doc["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _pid_alive(pid):
            continue  # a host killed with -9 left its file behind
        remote = Remote(url, token)
        challenge = secrets.token_hex(32)
        health = remote.health(challenge)
        if health is None:
            continue
        answered = health.get("app_id")
        if own is None or doc.get("app_id") != own or answered != own:
            _not_ours(path, url, own, answered, doc.get("data_dir"))
            continue
        # The id is public: what only this folder's host can give is the HMAC of this
        # challenge under the folder's secret (omnicore.appid), checked before the token
        # goes anywhere.
        given = health.get("proof")
        if key is None or not isinstance(given, str) or \
                not hmac.compare_digest(given, proof(key, own, challenge)):
            _not_ours(path, url, own, answered, doc.get("data_dir"),
                      unproven="no secret of it to check against" if key is None else
                      "no proof" if given is None else "a wrong proof")
            continue
        return remote
    return None


def _not_ours(path: Path, url: str, own: str | None, answered: object,
              theirs: object, unproven: str | None = None) -> None:
    import sys

    if own is None:
        why = (f"this app folder has no identity of its own yet ({path.parent}/app-id.json is "
               "missing or was made for another folder: copied from a running app?)")
    elif unproven is not None:
        why = (f"that host answers this folder's app id {own!r} but cannot prove it is this "
               f"folder's host (asked for an HMAC of a random challenge under the folder's "
               f"secret, app-key.json in its data dir, it gave {unproven}): an impostor on a "
               "dead host's port?")
    else:
        why = f"that host answers app id {answered!r}, this folder's is {own!r}"
    where = f" (it serves {theirs})" if isinstance(theirs, str) else ""
    print(f"omnicore: not using the host at {url}{where}, named by {path}: {why}; running "
          "without it, on this folder's own data (start this folder's host with `omnicore "
          "run`)", file=sys.stderr)


def data_dir_of(config_file: Path) -> Path | None:
    """The ``data_dir`` that ``load_config(config_file)`` gives, read without the schema.

    The same layers for this one key: ``$OMNICORE_DATA_DIR`` over the file's ``data_dir`` over
    the default, ``~`` and ``$VARS`` expanded, a relative path from the file's folder. None
    when the file is not a plain mapping or the value not a string: the caller then loads
    the config, which names the problem.
    """
    import yaml

    from omnicore import yamlfile

    try:
        doc = yamlfile.load(config_file.read_text(encoding="utf-8"), str(config_file))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        return None
    value: object = doc.get("data_dir", ".omnicore")
    for var in sorted(os.environ):  # the env layer: the last of its spellings wins
        if var.startswith("OMNICORE_") and var[len("OMNICORE_"):].lower() == "data_dir":
            value = os.environ[var]
    if not isinstance(value, str) or not value:
        return None
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    return path if path.is_absolute() else (config_file.resolve().parent / path).resolve()


def running_host(appdir: Path | None) -> tuple[Path | None, Remote | None]:
    """The host serving the app in ``appdir`` (default: here), found without loading the
    app's config; and the data dir looked in (None when it could not be read that way)."""
    config_file = (appdir if appdir is not None else Path(".")) / CONFIG_FILE
    data_dir = data_dir_of(config_file) if config_file.is_file() else None
    return data_dir, (find_running(data_dir) if data_dir is not None else None)


def explicit(url: str) -> Remote:
    return Remote(url, os.environ.get(TOKEN_ENV) or None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
