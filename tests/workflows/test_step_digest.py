"""A workflow step that asks for a plugin version (``digest: sha256:...`` beside ``uses:``)
runs only on a host serving that module (issue 44, item 3): two hosts in this process on one
PostgreSQL, each serving another build of one plugin from its own folder; each pinned step
runs on its version's host, an unpinned one on either; a version only the catalog keeps
waits (no attempt spent) until a host serves it. A digest that is malformed, on a step that
is no plugin step, or that no version has is refused naming it, in the definition's
validation and when a run starts."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.config.schema import CatalogConfig
from omnicore.errors import PluginNotFound
from omnicore.plugins.catalog import app_catalog
from omnicore.plugins.host import PluginHost
from omnicore.storage.postgres import PostgresStorage
from omnicore.workflows.definition import parse
from omnicore.workflows.errors import DefinitionError, WorkflowNotFound
from omnicore.workflows.validation import validate
from tests.host_fixtures import echo_wasm, write
from tests.waiting import eventually


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def flow(name: str, *pins: str | None) -> str:
    """A workflow of one plugin step per entry of ``pins`` (``tool/version``; the digest it
    asks for, or None for any)."""
    steps = "".join(f"  - id: s{i}\n    uses: plugin:tool/version\n"
                    + (f"    digest: {pin}\n" if pin else "") for i, pin in enumerate(pins))
    return f"format: omniflow/v1\nname: {name}\nsteps:\n{steps}"


@pytest.fixture
def hosts(start_host: Callable[..., OmniApp], pg_url: str) -> Callable[[bytes], OmniApp]:
    """Hosts on one PostgreSQL database, each serving ``module`` as tool from a folder of
    its own."""
    return lambda module: start_host("step-digest-test", url=pg_url, serving={"tool.wasm": module})


def reported(store: PostgresStorage, runtime_id: str, name: str) -> str | None:
    for i in store.instances.all():
        if i.runtime_id == runtime_id:
            doc = i.plugins.get(name)
            return doc.get("digest") if isinstance(doc, dict) else None
    return None


def state(store: PostgresStorage, run_id: int) -> str | None:
    run = store.workflows.run(run_id)
    return None if run is None else run.state


def ran_on(store: PostgresStorage, run_id: int, step: str) -> set[str | None]:
    return {h.actor for h in store.workflows.history(run_id)
            if h.kind == "step.started" and h.step == step}


def test_a_step_asking_for_a_version_runs_only_where_that_version_serves(
        hosts: Any, pg_url: str) -> None:
    one, two = echo_wasm("tool", "1.0.0"), echo_wasm("tool", "2.0.0")
    a, b = hosts(one), hosts(two)
    store = PostgresStorage(pg_url)
    try:
        eventually(lambda: reported(store, a.runtime_id, "tool") == digest(one)
                   and reported(store, b.runtime_id, "tool") == digest(two),
                   "both hosts reporting what they serve")
        # Any case, the prefix optional: stored in the catalog's form.
        a.workflows.add(flow("pinned", digest(one), digest(two).upper()[7:], None))
        runs = [a.workflows.start("pinned").id for _ in range(8)]
        eventually(lambda: all(state(store, r) == "succeeded" for r in runs),
                   "every run")
        for r in runs:
            rows = {row.step: row for row in store.workflows.steps(r)}
            assert rows["s0"].output == "1.0.0" and rows["s1"].output == "2.0.0"
            assert rows["s2"].output in ("1.0.0", "2.0.0")
            assert all(row.attempt == 1 for row in rows.values())
            assert ran_on(store, r, "s0") == {a.runtime_id}
            assert ran_on(store, r, "s1") == {b.runtime_id}
            assert rows["s0"].pin == f"tool@{digest(one)}" and rows["s2"].pin is None
        # A version only the catalog keeps: the run starts, and its step waits with no
        # attempt spent until a host serves it (published, then rolled back: kept, not in
        # force).
        three, four = echo_wasm("tool", "3.0.0"), echo_wasm("tool", "4.0.0")
        checker = PluginHost()
        try:
            catalog = app_catalog(lambda: store, checker.published.check_module,
                                  CatalogConfig())
            catalog.publish(three)
            catalog.publish(four)
            eventually(lambda: a.plugins.call("tool", "version") == b"4.0.0"
                       and b.plugins.call("tool", "version") == b"4.0.0", "version 4")
            b.workflows.add(flow("later", digest(three)))
            a.workflows.add(flow("anyway", None))
            waiting = b.workflows.start("later").id
            marker = a.workflows.start("anyway").id  # started after it, ends before it
            eventually(lambda: state(store, marker) == "succeeded", "the marker")
            held = store.workflows.step(waiting, "s0")
            assert held is not None and held.state == "queued" and held.attempt == 0
            catalog.rollback("tool", digest(three))
            eventually(lambda: state(store, waiting) == "succeeded",
                       "version 3's run")
            done = store.workflows.step(waiting, "s0")
            assert done is not None and done.attempt == 1 and done.output == "3.0.0"
        finally:
            checker.close()
        # A version no host serves and the catalog never kept: refused when a run starts and
        # in the definition's validation, naming the step and the digest.
        stranger = "sha256:" + "ab" * 32
        with pytest.raises(DefinitionError, match=f"steps\\[0\\].digest: step 's0': plugin "
                                                  f"'tool' has no version {stranger}"):
            b.workflows.add(flow("stranger", stranger))
        verdict = validate(flow("stranger", stranger), "stranger.yaml", a.workflows.entries)
        assert not verdict.ok
        (problem,) = verdict.problems
        assert problem.path == "steps[0].digest" and stranger in problem.message
        assert validate(flow("fine", digest(three)), "fine.yaml", a.workflows.entries).ok
        # The folder's builds: no host serves them any more (version 3 serves over them) and
        # the catalog never kept them. The loaded workflow asking for them was checked again
        # when the plugin changed, and a run of it is refused naming the digest.
        with pytest.raises(WorkflowNotFound, match=f"steps\\[0\\].digest: step 's0': plugin "
                                                   f"'tool' has no version {digest(one)}"):
            a.workflows.start("pinned")
        with pytest.raises(PluginNotFound, match=f"workflow pinned: step 's1': plugin 'tool' "
                                                 f"has no version {digest(two)}"):
            a.workflows.check_digests(parse(flow("pinned", None, digest(two)), "p.yaml"))
    finally:
        store.close()


@pytest.mark.parametrize(("step", "message"), [
    ("  - id: s\n    uses: plugin:tool/version\n    digest: latest\n",
     "steps[0].digest: digest 'latest' is not a plugin version"),
    ("  - id: s\n    uses: plugin:tool/version\n    digest: sha256:12\n",
     "steps[0].digest: digest 'sha256:12' is not a plugin version"),
    ("  - id: s\n    uses: plugin:tool/version\n    digest: 12\n",
     "steps[0].digest"),
    ("  - id: s\n    uses: workflow:other\n    digest: sha256:" + "ab" * 32 + "\n",
     "steps[0].digest: 'digest' asks for a plugin version: it belongs to plugin steps"),
    ("  - id: s\n    wait: approval\n    digest: sha256:" + "ab" * 32 + "\n",
     "steps[0].digest: 'digest' asks for a plugin version: it belongs to plugin steps"),
])
def test_a_malformed_digest_is_refused_naming_it(step: str, message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse(f"format: omniflow/v1\nname: bad\nsteps:\n{step}", "bad.yaml")
    assert message in str(caught.value)


def test_the_digest_is_part_of_the_definitions_version() -> None:
    pinned = parse(flow("f", "sha256:" + "ab" * 32), "f.yaml")
    assert pinned.steps[0].digest == "sha256:" + "ab" * 32
    assert pinned.steps[0].pin == "tool@sha256:" + "ab" * 32
    assert parse(flow("f", None), "f.yaml").version != pinned.version
    assert parse(flow("f", "sha256:" + "cd" * 32), "f.yaml").version != pinned.version


def test_a_claimed_step_for_a_version_no_longer_served_here_is_given_back_uncounted(
        tmp_path: Path, module_cache: Path) -> None:
    """The host swapped versions between the claim and the call: the step goes back to the
    queue without an attempt counted, for a host that serves its version."""
    import time

    from omnicore.storage.workflows import NewStep

    (tmp_path / "plugins").mkdir()
    (tmp_path / "workflows").mkdir()
    write(tmp_path / "plugins", "tool.wasm", echo_wasm("tool", "1.0.0"))
    app = OmniApp("step-digest-test", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "sandbox": {"cache_dir": str(module_cache)},
        "workflows": {"dir": str(tmp_path / "workflows")}},
        environ={}, entry_points=False)
    app.start()
    try:
        served = digest(echo_wasm("tool", "1.0.0"))
        old = digest(echo_wasm("tool", "0.9.0"))  # what it served when the step was claimed
        wf = app.workflows.add(flow("swap", served))
        store = app.workflows.store
        made = store.create_run("swap", wf.version, {}, None, "test")
        assert made is not None
        run_id = made[0]
        # The row as a claim saw it then (no host here claims it now: it pins another build).
        store.add_steps(run_id, [NewStep("s0", -1, "queued", run_at=1.0, pin=f"tool@{old}")])
        row = store.claim(app.workflows.owner, time.time(), 30)
        assert row is not None and row.step == "s0" and row.attempt == 1
        app.workflows._execute(row)
        back = store.step(run_id, "s0")
        assert back is not None and back.state == "queued" and back.attempt == 0
        assert back.owner is None and back.output is None
    finally:
        app.stop()


def test_every_item_of_a_pinned_for_each_carries_the_pin() -> None:
    from omnicore.storage.workflows import RunRecord
    from omnicore.workflows import advance as plan

    pin = "sha256:" + "ab" * 32
    wf = parse(f"format: omniflow/v1\nname: fan\nsteps:\n  - id: s\n    uses: plugin:tool/"
               f"version\n    digest: {pin}\n    for_each: '${{{{ [1, 2, 3] }}}}'\n"
               "    with: '${{ item }}'\n", "fan.yaml")
    run = RunRecord(1, "fan", wf.version, "running", {}, None, None, None, None, "t", None,
                    None, None, 0.0, 0.0, None, 0)
    rows = plan.begin(wf, wf.steps[0], [], plan.Context(run, {}), max_items=10, now=0.0)
    assert [(r.index, r.state, r.pin) for r in rows] == [
        (-1, "running", None), *((i, "pending", f"tool@{pin}") for i in range(3))]
