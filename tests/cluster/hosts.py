"""``omnicore run`` hosts on one PostgreSQL, each with its own app folder and plugins folder,
driven from outside as an operator would: for the plugin catalog's cluster tests
(tests/cluster/test_catalog_cluster.py) and its benchmark (bench/bench_catalog.py)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.hosts import OMNICORE
from tests.hosts import Host as RunHost
from tests.waiting import seconds_until

__all__ = ["Host", "hosts_serving", "wait_for"]


class Host(RunHost):
    """One ``omnicore run`` child of a cluster: its app folder (``plugins`` holds copies of
    ``plugins``), its config (``config`` merged over a cluster's defaults) and its process,
    on the PostgreSQL database at ``url``."""

    def __init__(self, root: Path, url: str, index: int, plugins: Sequence[Path],
                 config: Mapping[str, Any] | None = None) -> None:
        doc: dict[str, Any] = {
            "name": "catalog-cluster", "data_dir": "data", "plugins_dir": "plugins",
            "log": {"format": "json"}, "sandbox": {"watch": False},
            "console": {"port": 0},
            "capabilities": {"jobs": {"poll_s": 0.2}}}
        doc.update(config or {})
        super().__init__(root / f"host-{index}", doc, plugins)
        self.url = url

    def start(self, command: Sequence[str] = OMNICORE,  # type: ignore[override]
              **env: str) -> Host:
        """Start it on the cluster's database (``command``: another build's CLI)."""
        super().start({"OMNICORE_STORAGE__URL": self.url, **env}, command=command)
        return self


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
