"""``omnicore run`` in a child process: the one way a test starts a host it drives from
outside, as an operator, the CLI or another host would (in-process hosts: conftest's
``start_host``).

A :class:`Host` owns its process and the file its output goes to, so every wait on it
(:meth:`Host.until`, :meth:`Host.remote`, :meth:`Host.logged`) fails as soon as the host
exits, with its log's tail, instead of at the deadline. Its console listens on a free port
(``OMNICORE_CONSOLE__PORT=0``: 8470 may be another host's) unless the test says otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omnicore.cli.remote import Remote, find_running
from tests.waiting import eventually

__all__ = ["CHEAP_PASSWORD_HASH", "OMNICORE", "Host", "http_ok"]

#: The cheapest argon2id ``console.password_hash`` takes, for the hosts tests start with
#: users: each user added and each sign-in hashes, at the default cost a tenth of a second
#: of CPU, and the console's tests spent half their time on it.
#: tests/accounts/test_password_hash.py holds the default cost.
CHEAP_PASSWORD_HASH = {"time_cost": 1, "memory_kib": 8, "parallelism": 1}

T = TypeVar("T")

#: ``python -m omnicore.cli``: the CLI of this checkout, whatever scripts the venv has.
OMNICORE = (sys.executable, "-m", "omnicore.cli")


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Host:
    """``omnicore run DIR`` as a child process, its stdout and stderr appended to ``log``
    (beside DIR: DIR.log).

    With ``config``, DIR/omnicore.yaml is written from it; ``plugins`` are copied into
    DIR/plugins. ``data`` is the app's data dir (where its console file appears).
    """

    def __init__(self, dir: Path, config: Mapping[str, Any] | None = None,
                 plugins: Sequence[Path] = (), *, data: Path | None = None,
                 log: Path | None = None) -> None:
        self.dir = dir
        (dir / "plugins").mkdir(parents=True, exist_ok=True)
        for wasm in plugins:
            shutil.copy(wasm, dir / "plugins" / wasm.name)
        if config is not None:
            (dir / "omnicore.yaml").write_text(json.dumps(config))
        self.data = data or dir / "data"
        self.log = log or dir.parent / f"{dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runtime_id: str | None = None

    def start(self, env: Mapping[str, str] | None = None, *,
              command: Sequence[str] = OMNICORE, here: bool = False) -> Host:
        """Start it (``here``: ``cd DIR && omnicore run``), ``env`` over this process's."""
        full = {**os.environ, "PYTHONUNBUFFERED": "1", "OMNICORE_CONSOLE__PORT": "0",
                **(env or {})}
        argv = [*command, "run", *([] if here else [str(self.dir)])]
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(argv, env=full, stdout=sink, stderr=subprocess.STDOUT,
                                         cwd=self.dir if here else None)
        return self

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def text(self) -> str:
        """Its log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def until(self, check: Callable[[], T | None], what: str, **options: Any) -> T:
        """:func:`tests.waiting.eventually`, failing at once if this host exits."""
        return eventually(check, what, watch=[self], **options)

    def logged(self, fragment: str, **options: Any) -> str:
        """Wait for ``fragment`` in its log; the log then."""
        def said() -> str | None:
            text = self.text
            return text if fragment in text else None

        return self.until(said, f"{fragment!r} in its log", **options)

    def remote(self, **options: Any) -> Remote:
        """Its console, once it answers (plugins may still be loading)."""
        return self.until(lambda: find_running(self.data), "its console", **options)

    @property
    def console_file(self) -> dict[str, Any] | None:
        """The console file it wrote (url, token, pid...), not another host's."""
        pid = self.proc.pid if self.proc else None
        for found in [self.data / "console.json", *self.data.glob("instances/*/console.json")]:
            try:
                doc = json.loads(found.read_text())
            except (OSError, ValueError):
                continue
            if doc.get("pid") == pid:
                if found.parent.parent.name == "instances":
                    self.runtime_id = found.parent.name
                return dict(doc)
        return None

    @property
    def console(self) -> str | None:
        """Its console's address."""
        doc = self.console_file
        return None if doc is None else str(doc["url"])

    def readyz(self, query: str = "") -> int:
        """The status its /readyz answers (503 while its storage is away); 0: no answer.
        ``query``: ``?plugins=loaded`` asks for every plugin loaded too."""
        url = self.console
        if url is None:
            return 0
        try:
            with urllib.request.urlopen(url + "/readyz" + query, timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, ValueError):
            return 0

    def ready(self) -> bool:
        """Serving, with every plugin loaded: a host serves while its plugins still load
        (issue 63), and the tests that wait for it then look at the plugins."""
        return self.readyz("?plugins=loaded") == 200

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int | None:
        """Stop it with ``sig`` (killed if it has not ended 30 s later); its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode
