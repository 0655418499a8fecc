"""docs/operations/scale-out.md, followed as written: a new user on two app folders copied
from the demo ends with both hosts serving the signed plugin, every grant of the demo intact
(issue 61).

The convention: a shell block of the guide preceded by ``<!-- runs in:
tests/deploy/test_scale_out_guide.py -->`` is run here; every other shell block there is
``<!-- illustrative: reason -->`` (tests/test_docs.py holds the page to one or the other).
The runnable blocks are joined, in the page's order, into one bash script (``-e``: a step
that fails fails the test), run in a folder that looks like the checkout a reader has after
``./scripts/dev demo`` (``.venv`` linked, ``build/demo`` with the demo's config, plugins and
workflows, ``build/plugins/counter-rust.wasm``). Only what the guide tells a reader to replace
is replaced, each checked to be there so the guide cannot drift from the test: the database
URL (a private PostgreSQL's), the console ports 8471 and 8472 (two free ones) and the registry
``localhost:5000`` (a private ``docker-registry``); and, for time, ``seq 50`` enqueues 4 jobs.
The hosts compile into the tests' shared module cache (``OMNICORE_SANDBOX__CACHE_DIR``), as
every test's host does, so a warm run takes well under a minute.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.cli.remote import running_host
from omnicore.config import load_config
from omnicore.sandbox import modkey
from tests.dbservers import free_port
from tests.registryserver import Registry
from tests.test_docs import _RUNS_IN, fenced_blocks
from tests.waiting import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.toolchain, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operations" / "scale-out.md"
ME = "tests/deploy/test_scale_out_guide.py"
DEMO_URL = "postgresql://omnicore:omnicore@127.0.0.1:5432/omnicore"


def runnable_blocks(text: str) -> list[str]:
    """The guide's shell blocks marked ``<!-- runs in: tests/deploy/test_scale_out_guide.py
    -->``, in order."""
    return [block.body for block in fenced_blocks(text)
            if (marked := _RUNS_IN.search(block.before)) and marked["test"] == ME]


def substituted(script: str, replace: dict[str, str]) -> str:
    for placeholder, value in replace.items():
        assert placeholder in script, f"the guide no longer says {placeholder!r}"
        script = script.replace(placeholder, value)
    return script


def test_the_guide_marks_what_runs_and_the_reader_replaces() -> None:
    blocks = runnable_blocks(GUIDE.read_text(encoding="utf-8"))
    assert len(blocks) >= 3
    script = "\n".join(blocks)
    for placeholder in (DEMO_URL, "8471", "8472", "localhost:5000", "cp -r build/demo",
                        "plugins sign", "plugins publish oci://"):
        assert placeholder in script, placeholder
    assert "/tmp/" not in script  # every path is the checkout's: it runs where the reader is


@pytest.fixture
def registry() -> Iterator[Registry]:
    reg = Registry.start()
    yield reg
    reg.stop()


def _checkout(root: Path) -> None:
    """The folder a reader runs the guide in: the checkout after ``./scripts/dev demo``
    (scripts/dev: the demo's config, plugins built by ``scripts/dev setup``, workflows)."""
    (root / ".venv").symlink_to(ROOT / ".venv")
    demo = root / "build" / "demo"
    built = ROOT / "build" / "demo" / "plugins"
    assert any(built.glob("*.wasm")), "no demo plugins: run ./scripts/dev setup"
    shutil.copytree(built, demo / "plugins")
    shutil.copy(ROOT / "plugins" / "demo.yaml", demo / "omnicore.yaml")
    shutil.copytree(ROOT / "examples" / "workflows", demo / "workflows")
    (root / "build" / "plugins").mkdir()
    shutil.copy(ROOT / "build" / "plugins" / "counter-rust.wasm", root / "build" / "plugins")


def _environment(module_cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OMNICORE_") or k == modkey.ENV_KEY}
    env["OMNICORE_SANDBOX__CACHE_DIR"] = str(module_cache)
    return env


def _grants(value: Any) -> set[str]:
    return set(value) if isinstance(value, list | dict) else set()


def test_two_hosts_from_the_guide_serve_the_signed_plugin_with_every_grant(
        tmp_path: Path, pg_url: str, registry: Registry, module_cache: Path) -> None:
    root = tmp_path / "checkout"
    root.mkdir()
    _checkout(root)
    port_a, port_b = free_port(), free_port()
    script = substituted("\n".join(runnable_blocks(GUIDE.read_text(encoding="utf-8"))), {
        DEMO_URL: pg_url, "8471": str(port_a), "8472": str(port_b),
        "localhost:5000": registry.host, "$(seq 50)": "$(seq 4)"})
    log = tmp_path / "guide.log"
    with log.open("wb") as out:
        # -x with the time (bash takes no PS4 from the environment as root): a failure shows
        # which step, and when each ran.
        shell = subprocess.Popen(["bash", "-e", "-x", "-c", "PS4='+ $(date +%T) '\n" + script],
                                 cwd=root, env=_environment(module_cache), stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            code = shell.wait(timeout=240)
        except subprocess.TimeoutExpired:
            code = None
        said = log.read_text(errors="replace")
        hosts_said = "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
            for p in sorted((root / "build").glob("host-?.log")))
        assert code == 0, f"the guide's commands failed ({code}):\n{said}\n{hosts_said}"
        _check_outcome(root, port_a, port_b, said)
    finally:
        try:
            os.killpg(shell.pid, signal.SIGTERM)  # the hosts the guide left running
        except ProcessLookupError:
            pass
        _reap(shell.pid)


def _reap(group: int) -> None:
    def gone() -> bool:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        return False

    try:
        eventually(gone, "the guide's hosts to stop", timeout=20)
    except AssertionError:
        os.killpg(group, signal.SIGKILL)


def _check_outcome(root: Path, port_a: int, port_b: int, said: str) -> None:
    demo = load_config(root / "build" / "demo" / "omnicore.yaml", environ={})
    signed = hashlib.sha256((root / "build" / "plugins" / "counter-rust.wasm").read_bytes())
    digest = signed.hexdigest()
    assert re.search(r"published counter-rust v\d+ \(sha256:\w+.*signed by sha256:", said), said
    assert f"to the host at http://127.0.0.1:{port_a}" in said  # host-a's CLI reached host A
    served = [p.stem for p in (root / "build" / "demo" / "plugins").glob("*.wasm")]
    for folder, port in (("host-a", port_a), ("host-b", port_b)):
        app = root / "build" / folder
        # The folder's config: the demo's grants and config, and the trust the guide added.
        mine = load_config(app / "omnicore.yaml", environ={})
        assert mine.plugins == demo.plugins, folder
        assert mine.trust.require and mine.trust.keys == [str(app / "ops.pub")]
        # The CLI of this folder finds this folder's host, never the other one.
        _, remote = running_host(app)
        assert remote is not None and remote.url == f"http://127.0.0.1:{port}", (folder, remote)

        def counter_signed(remote: Any = remote) -> dict[str, Any] | None:
            info: dict[str, Any] = remote.request("GET", "/api/v1/plugins/counter-rust")
            return info if info.get("origin") == "catalog" and info.get("sha256") == digest \
                and info.get("state") == "loaded" else None

        eventually(counter_signed, f"{folder} serving the signed counter-rust", timeout=30)
        answer = remote.request("POST", "/api/v1/plugins/counter-rust/invoke",
                                {"handler": "count", "input": "{}"})
        assert '"count"' in answer["output"], answer

        def settled(remote: Any = remote) -> dict[str, Any] | None:
            # A plugin is listed as "compiling" until its first compile ends: the interpreted
            # ones (Python, Ruby) take many seconds on a cold cache and a loaded machine.
            listed: dict[str, Any] = remote.request("GET", "/api/v1/plugins?limit=500")
            assert listed["total"] == len(listed["items"])
            by_name = {p["name"]: p for p in listed["items"]}
            return None if any(by_name.get(n, {}).get("state") == "compiling" for n in served) \
                else by_name

        by_name = eventually(settled, f"{folder}'s plugins to be compiled", timeout=120)
        for name in served:
            want = demo.plugins.get(name)
            if want is None:
                continue
            have = by_name.get(name)
            assert have is not None and have["state"] == "loaded", \
                (folder, name, have and have["state"], have and have["last_error"])
            missing = _grants(want.grants) - set(have["granted"])
            assert not missing, f"{folder}: {name} lost its grants {sorted(missing)}"
            assert have["config"] == want.config, (folder, name)
