"""A rolling upgrade for real: a host built from an earlier commit of this repository and a
host of this one on one PostgreSQL, with traffic across the switch (specs/host.md "Upgrades").

The earlier build is the commit before the job queue's table rename (PostgreSQL schema step
10, an expand step: ``tasks`` became ``jobs`` and a view keeps the old name), taken with ``git
archive`` and installed into a venv of its own at test time (``pip install -e --no-deps``; its
dependencies come from this venv's site-packages through a ``.pth``, so nothing is
downloaded). Its host serves, a client process of that build enqueues, then a host of this
build starts and migrates the schema under both, jobs are enqueued by either build on either
side of the switch, the old host is stopped, and every job has run, its effect once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omnicore import __version__
from omnicore.storage import JobSpec
from omnicore.storage.postgres import PostgresStorage
from omnicore.storage.postgres.schema import SCHEMA_VERSION
from tests.cluster.test_scaleout import Host, until, worker_wasm

__all__ = ["worker_wasm"]

ROOT = Path(__file__).resolve().parents[2]
#: The earlier build's schema (before the rename) and the client it runs: one line in, the
#: ids of the jobs it enqueued out. A process of that build opened before the upgrade, as its
#: hosts are: an omnicore from before schema 11 refuses any newer schema at open.
BEFORE = 9
_OLD_CLIENT = """
import json, sys, time
from omnicore.storage import TaskSpec
from omnicore.storage.postgres import PostgresStorage
s = PostgresStorage(sys.argv[1])
print(s.backend.schema_version, flush=True)
for line in sys.stdin:
    first, last = map(int, line.split())
    print(json.dumps([s.queue.add(TaskSpec("worker", "slow", json.dumps({"id": i, "ms": 50})
                                           .encode(), time.time()))
                      for i in range(first, last)]), flush=True)
s.close()
"""


#: The earlier build's processes import their own omnicore: never this checkout's through a
#: PYTHONPATH the test runs under (an empty value is no value to Python).
#: Nor a setting it predates (tests/compiler.py's `sandbox.compiler`): it refuses unknown keys.
OLD_ENV = {**{k: v for k, v in os.environ.items() if k != "OMNICORE_SANDBOX__COMPILER"},
           "PYTHONPATH": ""}


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def old_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The python of a venv holding omnicore as of the commit before the jobs rename."""
    rename = _git("log", "--format=%H", "--reverse", "-S", "_V10_JOBS_RENAME", "--",
                  "host/omnicore/storage/postgres/schema.py").splitlines()[0]
    root = tmp_path_factory.mktemp("old-omnicore")
    src = root / "src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", f"{rename}^"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    venv = root / "venv"
    # No pip of its own: this venv's pip installs into it, with this venv's setuptools.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], check=True,
                             capture_output=True, text=True).stdout.strip()
    # After its own site-packages: the dependencies, never this checkout's omnicore (a plain
    # path entry runs none of that directory's .pth files, so its editable install stays out).
    Path(purelib, "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
                    "--no-deps", "--no-build-isolation", "--no-index", "-e", str(src)],
                   check=True, capture_output=True, env=OLD_ENV)
    found = subprocess.run([python, "-c", "import omnicore.storage.postgres.schema as s; "
                            "print(s.__file__, s.SCHEMA_VERSION)"], check=True,
                           capture_output=True, text=True, env=OLD_ENV).stdout.split()
    assert found == [str(src / "host/omnicore/storage/postgres/schema.py"), str(BEFORE)]
    return python


class OldClient:
    """A client process of the earlier build, opened before the upgrade, enqueuing on ask."""

    def __init__(self, python: str, url: str) -> None:
        self.proc = subprocess.Popen([python, "-c", _OLD_CLIENT, url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=OLD_ENV)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        assert self.proc.stdout.readline().strip() == str(BEFORE), self.proc.stderr.read()  # type: ignore[union-attr]

    def add(self, first: int, last: int) -> list[int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{first} {last}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read()  # type: ignore[union-attr]
        return list(json.loads(line))

    def close(self) -> None:
        _out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err

    def kill(self) -> None:
        """End it whatever the test came to: a process left running with its pipes open is
        collected in a later test, which fails on the ResourceWarning."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[Host]]:
    made: list[Host] = []
    yield made
    for h in made:
        h.stop()


@pytest.fixture
def old_client(old_python: str, pg_url: str) -> Iterator[Callable[[], OldClient]]:
    """Opens the earlier build's client on ask; killed at the end, pass or fail."""
    made: list[OldClient] = []

    def open_client() -> OldClient:
        made.append(OldClient(old_python, pg_url))
        return made[-1]

    yield open_client
    for client in made:
        client.kill()


def _kv(store: PostgresStorage, key: str) -> int:
    return int(store.kv("worker").get(key) or 0)


def test_a_rolling_upgrade_from_the_previous_build_loses_and_doubles_nothing(
        tmp_path: Path, pg_url: str, worker_wasm: Path, old_python: str,
        hosts: list[Host], old_client: Callable[[], OldClient],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Both builds' hosts with the default compiler: the previous build has no such setting.
    monkeypatch.delenv("OMNICORE_SANDBOX__COMPILER")
    tick = [{"name": "tick", "handler": "tick", "every": "1s"}]
    old = Host(tmp_path, pg_url, worker_wasm, 0, tick)
    hosts.append(old)
    old.start((old_python, "-m", "omnicore.cli"), PYTHONPATH="")
    until(old.ready, "the previous build's host ready", hosts, timeout=120)
    client = old_client()
    ids = client.add(0, 20)  # before the upgrade, by the previous build

    # A host of this build told not to migrate refuses the old schema, in one line.
    refused = Host(tmp_path, pg_url, worker_wasm, 1, tick)
    refused.start(OMNICORE_STORAGE__MIGRATE="false")
    assert refused.proc is not None and refused.proc.wait(60) != 0
    line = f"the schema is at version {BEFORE} and omnicore {__version__} (schema " \
           f"{SCHEMA_VERSION}) needs {SCHEMA_VERSION}; storage.migrate is false, so run " \
           "`omnicore migrate"
    assert line in refused.log.read_text()

    new = Host(tmp_path, pg_url, worker_wasm, 2, tick)
    hosts.append(new)
    new.start()  # migrates to this build's schema under the running old host
    until(new.ready, "this build's host ready", hosts, timeout=120)
    store = PostgresStorage(pg_url, schema="require")
    try:
        assert store.backend.schema_version == SCHEMA_VERSION
        # Both builds in the instance table. A host starved past cluster.dead_after_s on a
        # loaded machine is reaped and registers again at its next beat (membership.py): a
        # wait, not a look, so the test is about the upgrade, not the machine's load.
        until(lambda: len(store.instances.all()) == 2, "both builds' hosts registered",
              hosts)
        ticks_from = _kv(store, "ticks")
        switched = time.monotonic()
        # Both builds enqueue on the new schema; the old one through the view `tasks`.
        ids += client.add(20, 40)
        ids += [store.queue.add(JobSpec("worker", "slow", json.dumps({"id": i, "ms": 50})
                                        .encode(), time.time())) for i in range(40, 60)]
        store.queue.add(JobSpec("worker", "emit", b'{"n": 20}', time.time()))
        until(lambda: sum(j.state == "succeeded" for j in store.queue.list(plugin="worker"))
              >= 30, "jobs running across the switch", hosts, timeout=60)
        client.close()
        old.stop()  # SIGTERM: the old host drains and leaves
        assert old.proc is not None and old.proc.returncode == 0, old.log.read_text()[-3000:]
        ids += [store.queue.add(JobSpec("worker", "slow", json.dumps({"id": i, "ms": 50})
                                        .encode(), time.time())) for i in range(60, 80)]
        until(lambda: all(store.queue.get(i).state == "succeeded" for i in ids)  # type: ignore[union-attr]
              and _kv(store, "pings") >= 20,
              "every job of both builds and every event delivered", [new], timeout=90)
        assert len(set(ids)) == 80
        assert _kv(store, "effects") == 80  # each job's effect once
        # A graceful stop drains: nothing was run twice, not even at-least-once's second time.
        assert [_kv(store, f"started:{i}") for i in range(80)] == [1] * 80
        assert _kv(store, "pings") == 20  # the durable subscription delivered each event once
        assert not [j for j in store.queue.list(plugin="worker") if j.state != "succeeded"]
        # The one-second schedule fired on, once per period, across both builds.
        until(lambda: _kv(store, "ticks") > ticks_from + 1, "a tick after the switch", [new])
        elapsed = time.monotonic() - switched
        assert _kv(store, "ticks") - ticks_from <= elapsed + 2
        # The old host left the table as it stopped (a clean stop is no death to reap).
        assert old.proc.pid not in {i.pid for i in store.instances.all()}
    finally:
        store.close()
