"""A job that asks for a plugin version (``digest``) is claimed only by a host serving that
module (issue 44, item 3): two hosts in this process on one PostgreSQL, each serving another
build of one plugin from its own folder; jobs for each digest run only on its host, jobs
without one on either, a job for a version only the catalog keeps waits (no delivery spent)
until a host serves it. Bad digests are refused naming them (the REST side:
tests/console/test_jobs_digest.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.config.schema import CatalogConfig
from omnicore.errors import PluginNotFound
from omnicore.jobs.service import KeyReused
from omnicore.plugins.catalog import app_catalog
from omnicore.plugins.host import PluginHost
from omnicore.storage.postgres import PostgresStorage
from tests.host_fixtures import echo_wasm, write
from tests.waiting import eventually


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def hosts(start_host: Callable[..., OmniApp], pg_url: str) -> Callable[[bytes], OmniApp]:
    """Hosts on one PostgreSQL database, each serving ``module`` as tool from a folder of
    its own."""
    return lambda module: start_host("digest-test", url=pg_url, serving={"tool.wasm": module})


def reported(store: PostgresStorage, runtime_id: str, name: str) -> str | None:
    for i in store.instances.all():
        if i.runtime_id == runtime_id:
            doc = i.plugins.get(name)
            return doc.get("digest") if isinstance(doc, dict) else None
    return None


def test_a_job_asking_for_a_version_runs_only_where_that_version_serves(
        hosts: Any, pg_url: str) -> None:
    one, two = echo_wasm("tool", "1.0.0"), echo_wasm("tool", "2.0.0")
    a, b = hosts(one), hosts(two)
    store = PostgresStorage(pg_url)
    try:
        eventually(lambda: reported(store, a.runtime_id, "tool") == digest(one)
                   and reported(store, b.runtime_id, "tool") == digest(two),
                   "both hosts reporting what they serve")
        on_a = [a.jobs.enqueue("tool", "version", digest=digest(one)) for _ in range(20)]
        on_b = [a.jobs.enqueue("tool", "version", digest=digest(two).upper()[7:])
                for _ in range(20)]
        anywhere = [b.jobs.enqueue("tool", "version") for _ in range(10)]
        everything = [*on_a, *on_b, *anywhere]
        eventually(lambda: all(store.queue.get(j).state == "succeeded" for j in everything),
                   "every job")
        jobs = {j: store.queue.get(j) for j in everything}
        assert all(job.attempts == 1 for job in jobs.values())
        assert {jobs[j].owner for j in on_a} == {a.runtime_id}
        assert {jobs[j].result for j in on_a} == {b"1.0.0"}
        assert {jobs[j].owner for j in on_b} == {b.runtime_id}
        assert {jobs[j].result for j in on_b} == {b"2.0.0"}
        assert jobs[on_b[0]].digest == digest(two)  # stored in the catalog's form
        assert jobs[anywhere[0]].digest is None
        # A version only the catalog keeps: accepted, and no host spends a delivery on it
        # until one serves it (published, then rolled back: kept, not in force).
        three = echo_wasm("tool", "3.0.0")
        checker = PluginHost()
        try:
            catalog = app_catalog(lambda: store, checker.published.check_module,
                                  CatalogConfig())
            catalog.publish(three)
            four = echo_wasm("tool", "4.0.0")
            catalog.publish(four)
            eventually(lambda: a.plugins.call("tool", "version") == b"4.0.0"
                       and b.plugins.call("tool", "version") == b"4.0.0", "version 4")
            waiting = a.jobs.enqueue("tool", "version", digest=digest(three))
            marker = a.jobs.enqueue("tool", "version")  # queued after it, runs before it
            eventually(lambda: store.queue.get(marker).state == "succeeded", "the marker")
            held = store.queue.get(waiting)
            assert held.state == "queued" and held.attempts == 0
            catalog.rollback("tool", digest(three))
            eventually(lambda: store.queue.get(waiting).state == "succeeded", "version 3's job")
            done = store.queue.get(waiting)
            assert done.attempts == 1 and done.result == b"3.0.0"
        finally:
            checker.close()
        # Refused, naming the digest: one no version has, and one that is not a digest.
        stranger = "sha256:" + "ab" * 32
        with pytest.raises(PluginNotFound, match=f"version {stranger}: no version"):
            a.jobs.enqueue("tool", "version", digest=stranger)
        with pytest.raises(PluginNotFound, match="no version"):
            a.jobs.enqueue("other", "version", digest=digest(one))  # tool's, not other's
        with pytest.raises(ValueError, match="'sha256:12' is not a plugin version"):
            a.jobs.enqueue("tool", "version", digest="sha256:12")
        with pytest.raises(PluginNotFound):
            a.jobs.enqueue_once("tool", "version", b"", "k1", version=stranger)
        # The idempotency key covers the version asked for.
        first, made = a.jobs.enqueue_once("tool", "version", b"", "k2",
                                          version=digest(three))
        again, made_again = a.jobs.enqueue_once("tool", "version", b"", "k2",
                                                version=digest(three))
        assert made and not made_again and again == first
        with pytest.raises(KeyReused):
            a.jobs.enqueue_once("tool", "version", b"", "k2", version=digest(four))
        # The folder's builds no host serves any more (the catalog's version 3 serves over
        # them) and the catalog never kept: refused.
        with pytest.raises(PluginNotFound, match="no host serves"):
            a.jobs.enqueue("tool", "version", digest=digest(one))
    finally:
        store.close()


def test_the_cli_queues_a_job_for_a_version_into_the_store(tmp_path: Path,
                                                           module_cache: Path) -> None:
    """``omnicore jobs enqueue --digest`` with no host running: checked against the catalog,
    stored with the job; a digest no version has, or no digest at all, refused naming it."""
    from click.testing import CliRunner

    from omnicore.cli import main
    from omnicore.storage import SQLiteStorage

    appdir = tmp_path / "app"
    (appdir / "plugins").mkdir(parents=True)
    (appdir / "omnicore.yaml").write_text(
        f"name: cli-digest\ndata_dir: data\nplugins_dir: plugins\n"
        f"sandbox: {{cache_dir: {module_cache}}}\n")
    module = echo_wasm("tool", "1.0.0")
    (tmp_path / "tool.wasm").write_bytes(module)
    runner = CliRunner()
    assert runner.invoke(main, ["plugins", "publish", str(tmp_path / "tool.wasm"),
                                "--app", str(appdir)]).exit_code == 0

    def enqueue(*args: str) -> Any:
        return runner.invoke(main, ["jobs", "enqueue", "tool", "version", *args,
                                    "--app", str(appdir)])

    out = enqueue("--digest", digest(module))
    assert out.exit_code == 0, out.output
    assert f"on {digest(module)[:19]}" in out.output
    stranger = "sha256:" + "ef" * 32
    refused = enqueue("--digest", stranger)
    assert refused.exit_code != 0 and stranger in refused.output
    refused = enqueue("--digest", "latest")
    assert refused.exit_code != 0 and "'latest' is not a plugin version" in refused.output
    store = SQLiteStorage(appdir / "data" / "omnicore.db")
    try:
        (job,) = store.queue.list(plugin="tool")
        assert job.digest == digest(module)
    finally:
        store.close()


def test_a_claimed_job_for_a_version_no_longer_served_here_is_given_back_uncounted(
        tmp_path: Path, module_cache: Path) -> None:
    """The host swapped versions between the claim and the call: the job goes back to the
    queue without a delivery counted, for a host that serves its version."""
    from omnicore.storage import JobSpec

    (tmp_path / "plugins").mkdir()
    write(tmp_path / "plugins", "tool.wasm", echo_wasm("tool", "1.0.0"))
    app = OmniApp("digest-test", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "sandbox": {"cache_dir": str(module_cache)}, "capabilities": {"jobs": {"workers": 1}}},
        environ={}, entry_points=False)
    app.start()
    try:
        old = digest(echo_wasm("tool", "0.9.0"))  # what it served when the job was claimed
        runner = app.jobs.runner
        store = app.storage
        job_id = store.queue.add(JobSpec("tool", "version", b"", 0.0, digest=old))
        job = store.queue.claim(runner.owner, 1.0, 30)  # as the claim saw it then
        assert job is not None and job.id == job_id and job.attempts == 1
        runner.run(job)
        back = store.queue.get(job_id)
        assert back is not None and back.state == "queued" and back.attempts == 0
        assert back.owner is None and back.result is None
    finally:
        app.stop()
