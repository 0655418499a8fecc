"""``omnicore run`` hosts on one PostgreSQL, each with its own app folder and plugins folder,
driven from outside as an operator would: for the plugin catalog's cluster tests
(tests/cluster/test_catalog_cluster.py) and its benchmark (bench/bench_catalog.py)."""

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
from typing import Any

from tests.waiting import seconds_until

__all__ = ["Host", "hosts_serving", "wait_for"]


class Host:
    """One ``omnicore run`` child: its app folder (``plugins`` holds copies of ``plugins``),
    its config (``config`` merged over a cluster's defaults) and its process."""

    def __init__(self, root: Path, url: str, index: int, plugins: Sequence[Path],
                 config: Mapping[str, Any] | None = None) -> None:
        self.dir = root / f"host-{index}"
        (self.dir / "plugins").mkdir(parents=True)
        for wasm in plugins:
            shutil.copy(wasm, self.dir / "plugins" / wasm.name)
        doc: dict[str, Any] = {
            "name": "catalog-cluster", "data_dir": "data", "plugins_dir": "plugins",
            "log": {"format": "json"}, "sandbox": {"watch": False},
            "console": {"port": 0},
            "capabilities": {"jobs": {"poll_s": 0.2}}}
        doc.update(config or {})
        (self.dir / "omnicore.yaml").write_text(json.dumps(doc))
        self.url = url
        self.log = self.dir / "host.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runtime_id: str | None = None

    def start(self, **env: str) -> None:
        full = {**os.environ, "OMNICORE_STORAGE__URL": self.url, "PYTHONUNBUFFERED": "1", **env}
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen([sys.executable, "-m", "omnicore.cli", "run",
                                          str(self.dir)], env=full, stdout=sink, stderr=sink)

    @property
    def console(self) -> str | None:
        for found in (self.dir / "data").glob("instances/*/console.json"):
            try:
                doc = json.loads(found.read_text())
            except (OSError, ValueError):
                continue
            if doc.get("pid") == (self.proc.pid if self.proc else None):
                self.runtime_id = found.parent.name
                return str(doc["url"])
        return None

    def ready(self) -> bool:
        url = self.console
        if url is None:
            return False
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                return int(r.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def wait_for(pred: Callable[[], bool], what: str, hosts: Sequence[Host],
             timeout: float = 60.0, every: float = 0.02) -> float:
    """Wait for ``pred``; the seconds it took. A host that died (not stopped or killed by
    the test), or the timeout, raises AssertionError with the hosts' log tails."""
    return seconds_until(pred, what, watch=hosts, ok_exits=(0, -signal.SIGKILL),
                         timeout=timeout, every=every)


def hosts_serving(storage: Any, name: str, digest: str) -> set[str]:
    """The runtime ids of the hosts that report serving ``digest`` as plugin ``name``."""
    return {i.runtime_id for i in storage.instances.all()
            if (i.plugins.get(name) or {}).get("digest") == digest}
