"""``omnicore plugins publish|versions|rollback|remove|catalog``: with no host running the
command opens the app's store itself; beside a running host (``omnicore run``) it asks that
host's REST API, and the host serves the published plugin within seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from omnicore.cli import main
from omnicore.cli.remote import Remote, RemoteError
from omnicore.storage import SQLiteStorage
from tests.host_fixtures import config_wasm, echo_wasm
from tests.hosts import Host
from tests.waiting import eventually


@pytest.fixture
def appdir(tmp_path: Path, module_cache: Path) -> Path:
    app = tmp_path / "app"
    (app / "plugins").mkdir(parents=True)
    (app / "omnicore.yaml").write_text(
        "name: cli-catalog\ndata_dir: data\nplugins_dir: plugins\nconsole: {port: 0}\n"
        f"sandbox: {{cache_dir: {module_cache}}}\ncatalog: {{poll_s: 0.1}}\n")
    return app


def run(appdir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["plugins", *args, "--app", str(appdir)],
                                catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_publish_versions_rollback_remove_without_a_host(appdir: Path, tmp_path: Path) -> None:
    one = tmp_path / "conf.wasm"
    one.write_bytes(echo_wasm("conf", "1.0.0"))
    (tmp_path / "conf.yaml").write_text("grants: [config]\nconfig: {k: v1}\n")
    code, out, err = run(appdir, "publish", str(one))
    assert code == 0, err
    assert out.startswith("published conf v1 (sha256:") and "with conf.yaml" in out
    assert "requests only" in err and "omnicore settings grant conf CAP" in err
    code, out, _ = run(appdir, "publish", str(one))
    assert code == 0 and "in force already; nothing changed" in out
    two = tmp_path / "v2" / "conf.wasm"
    two.parent.mkdir()
    two.write_bytes(config_wasm("conf"))
    assert run(appdir, "publish", str(two))[0] == 0  # no sidecar beside this one
    code, out, _ = run(appdir, "versions", "conf")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("* v2") and lines[1].startswith("  v1")
    code, out, _ = run(appdir, "rollback", "conf")
    assert code == 0 and out.startswith("conf: v1 (sha256:")
    code, out, _ = run(appdir, "versions", "conf", "--json")
    doc = json.loads(out)
    assert doc["version"]["number"] == 1 and doc["version"]["sidecar"]["config"] == {"k": "v1"}
    assert run(appdir, "rollback", "conf", "v2")[0] == 0
    code, out, _ = run(appdir, "catalog", "--json")
    items = json.loads(out)["items"]
    assert [(i["name"], i["version"]["number"]) for i in items] == [("conf", 2)]
    assert run(appdir, "remove", "conf")[0] == 0
    assert json.loads(run(appdir, "catalog", "--json")[1])["items"] == []
    store = SQLiteStorage(appdir / "data" / "omnicore.db")
    try:
        audit = [(e.action, e.origin) for e in store.audit.entries(action_prefix="catalog.")]
        versions = store.catalog.versions("conf")
    finally:
        store.close()
    assert [v.published_by for v in versions] == ["cli", "cli"]
    assert [a for a, _ in audit] == ["catalog.remove", "catalog.rollback", "catalog.rollback",
                                     "catalog.publish", "catalog.publish"]
    assert {o for _, o in audit} == {"cli"}


def test_bad_publishes_from_the_cli_say_why(appdir: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"\0asm\x01\0\0\0nonsense")
    result = CliRunner().invoke(main, ["plugins", "publish", str(junk), "--app", str(appdir)])
    assert result.exit_code == 1 and "Error:" in result.output
    good = tmp_path / "p.wasm"
    good.write_bytes(echo_wasm("p"))
    (tmp_path / "p.yaml").write_text("grnats: [kv]\n")
    result = CliRunner().invoke(main, ["plugins", "publish", str(good), "--app", str(appdir)])
    assert result.exit_code == 1 and "unknown sidecar key 'grnats'" in result.output
    result = CliRunner().invoke(main, ["plugins", "rollback", "nope", "--app", str(appdir)])
    assert result.exit_code == 1 and "no plugin 'nope' in the catalog" in result.output


@pytest.fixture
def running(appdir: Path) -> Iterator[Remote]:
    with Host(appdir).start() as host:
        yield host.remote()


def version_of(remote: Remote, name: str) -> str | None:
    try:
        out = remote.call(name, "version", b"")
    except RemoteError:
        return None
    return out.decode()


def test_publish_through_the_running_host_and_roll_back(appdir: Path, tmp_path: Path,
                                                        running: Remote) -> None:
    for v in ("1.0.0", "2.0.0"):
        path = tmp_path / v / "greeter.wasm"
        path.parent.mkdir()
        path.write_bytes(echo_wasm("greeter", v))
        started = time.monotonic()
        code, out, err = run(appdir, "publish", str(path))
        assert code == 0, err
        assert f"to the host at {running.url}" in out
        eventually(lambda v=v: version_of(running, "greeter") == v, f"greeter {v} served")
        assert time.monotonic() - started < 20
    code, out, _ = run(appdir, "rollback", "greeter")
    assert code == 0 and "v1" in out
    started = time.monotonic()
    eventually(lambda: version_of(running, "greeter") == "1.0.0", "greeter 1.0.0 served again")
    assert time.monotonic() - started < 20
    code, out, err = run(appdir, "catalog")
    assert code == 0 and "1/1 hosts" in out and "converged" in err
