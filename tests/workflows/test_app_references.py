"""Workflow definitions checked against an app: ``omnicore workflows validate --app``,
``workflows list`` and the console name a step whose plugin the app lacks (a warning) or
whose handler the plugin lacks (an error), from real plugins built from WAT fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, expect

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.browsers import SHOTS, off_thread
from tests.host_fixtures import echo_wasm
from tests.hosts import CHEAP_PASSWORD_HASH
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
HEAD = "format: omniflow/v1\n"
# echo (host_echo.wat) has the handlers echo, version, fail, trap, spin, slow.
GOOD = HEAD + "name: good\nsteps:\n  - {id: say, uses: plugin:echo/echo}\n"
LATER = HEAD + ("name: later\nsteps:\n  - {id: say, uses: plugin:echo/echo}\n"
                "  - {id: stamp, needs: [say], uses: plugin:stamper/stamp}\n")
WRONG = HEAD + ("name: wrong\nsteps:\n  - {id: shout, uses: plugin:echo/shout}\n"
                "  - {id: stamp, uses: plugin:stamper/stamp}\n")
HANDLERS = "echo, version, fail, trap, spin, slow"


def make_app(tmp: Path, workflows: dict[str, str]) -> Path:
    """An app folder with the echo plugin (a real module compiled from WAT)."""
    (tmp / "plugins").mkdir(parents=True)
    (tmp / "workflows").mkdir()
    (tmp / "plugins" / "echo.wasm").write_bytes(echo_wasm("echo"))
    for name, text in workflows.items():
        (tmp / "workflows" / name).write_text(text)
    (tmp / "omnicore.yaml").write_text(
        "name: refs\ndata_dir: data\nplugins_dir: plugins\nconsole: {enabled: false}\n"
        "workflows: {dir: workflows, poll_s: 0.1}\n")
    return tmp


def omnicore(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real ``omnicore`` command in a subprocess (this checkout's source first)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "host"),
           "OMNICORE_CACHE_DIR": str(cwd / "module-cache")}
    return subprocess.run([sys.executable, "-m", "omnicore.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_validate_against_the_app_warns_for_a_missing_plugin_and_fails_a_missing_handler(
        tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", {})
    later, wrong = tmp_path / "later.yaml", tmp_path / "wrong.yaml"
    later.write_text(LATER)
    wrong.write_text(WRONG)

    done = omnicore("workflows", "validate", str(later), "--app", str(app), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"{later}: warning: line 5: steps[1].uses: step 'stamp' uses plugin 'stamper', which "
        "the app does not have (plugins: echo); it may be added later or served by another "
        "host of the store: until a host serves it, the step waits queued"]
    assert f"{later}: ok — workflow later, 2 step(s)" in done.stdout
    assert "1 warning(s)" in done.stdout
    # The handlers are read from the bytes: nothing compiled, nothing cached (issue 63).
    assert not list((tmp_path / "module-cache").glob("*.cwasm"))

    done = omnicore("workflows", "validate", str(wrong), str(later), "--app", str(app),
                    cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == (f"{wrong}: error: line 4: steps[0].uses: step 'shout': plugin 'echo' "
                        f"has no handler 'shout' (handlers: {HANDLERS})")
    assert lines[1].startswith(f"{wrong}: warning: line 5: steps[1].uses: step 'stamp' uses "
                               "plugin 'stamper'")
    assert len(lines) == 3 and lines[2].startswith(f"{later}: warning:")   # one line each
    assert "wrong" not in done.stdout and f"{later}: ok" in done.stdout

    # Without --app nothing is known of plugins: both definitions are valid as such.
    done = omnicore("workflows", "validate", str(wrong), cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""


def test_plugin_arriving_later_turns_the_warning_off(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", {})
    later = tmp_path / "later.yaml"
    later.write_text(LATER)
    (app / "plugins" / "stamper.wasm").write_bytes(echo_wasm("stamper"))
    done = omnicore("workflows", "validate", str(later), "--app", str(app), cwd=tmp_path)
    # stamper is there now, but has no handler 'stamp': a warning became an error.
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{later}: error: line 5: steps[1].uses: step 'stamp': plugin 'stamper' has no "
        f"handler 'stamp' (handlers: {HANDLERS})"]
    later.write_text(LATER.replace("stamper/stamp", "stamper/version"))
    done = omnicore("workflows", "validate", str(later), "--app", str(app), cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    assert "warning" not in done.stdout


def test_hostile_definitions_are_one_line_findings_never_a_crash(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", {})
    files = {
        "binary.yaml": b"\x00asm\x01\x00\x00\x00\xff\xfe\x80",            # not text at all
        "braces.yaml": b"format: omniflow/v1\nname: x\nsteps: [{{{: :\n",   # not YAML
        "list.yaml": b"- just\n- a list\n",                                  # not a mapping
        "ctl.json": json.dumps({"format": "omniflow/v1", "name": "ctl", "steps": [
            {"id": "a\x1b[2J\rb\nc", "uses": "plugin:echo/echo"}]}).encode(),
        "ctlkey.json": json.dumps({"format": "omniflow/v1", "name": "ctlkey", "steps": [
            {"id": "a", "uses": "plugin:echo/echo", "\x1b]0;pwned\x07": 1}]}).encode(),
        "ctlplugin.yaml": HEAD.encode() + b'name: p\nsteps:\n  - {id: a, uses: '
                                          b'"plugin:e\\x1bcho/echo"}\n',
        "huge.yaml": GOOD.encode() + b"#" + b"x" * (2 << 20) + b"\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = [str(tmp_path / n) for n in files]
    done = omnicore("workflows", "validate", *paths, "--app", str(app), cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert not any(ord(c) < 32 and c != "\n" for c in done.stderr + done.stdout)
    by_file: dict[str, list[str]] = {}
    for line in done.stderr.splitlines():
        by_file.setdefault(Path(line.split(": ", 1)[0]).name, []).append(line)
    assert set(by_file) == set(files)
    assert all(": error: " in line for lines in by_file.values() for line in lines)
    assert "not a text file" in by_file["binary.yaml"][0]
    assert "not valid YAML" in by_file["braces.yaml"][0]
    assert "larger than 1048576 bytes" in by_file["huge.yaml"][0]
    assert "\\x1b[2J\\rb\\nc" in by_file["ctl.json"][0]          # shown escaped, one line
    assert "\\x1b]0;pwned\\x07" in " ".join(by_file["ctlkey.json"])
    assert "\\x1bcho" in by_file["ctlplugin.yaml"][0]


def test_list_shows_the_same_findings_per_workflow(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", {"good.yaml": GOOD, "later.yaml": LATER,
                                      "wrong.yaml": WRONG})
    done = omnicore("workflows", "list", "--app", str(app), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    head = {line.split()[0]: i for i, line in enumerate(rows) if not line.startswith(" ")}
    assert rows[head["good"]].split()[1] == "loaded" and rows[head["good"] + 1] == rows[
        head["later"]]                                                  # no finding for good
    assert rows[head["later"]].split()[1] == "loaded"
    assert rows[head["later"] + 1].startswith("    warning: line 5: steps[1].uses: step "
                                              "'stamp' uses plugin 'stamper'")
    assert rows[head["wrong"]].split()[1] == "failed"
    assert rows[head["wrong"] + 1] == ("    error: line 4: steps[0].uses: step 'shout': "
                                       "plugin 'echo' has no handler 'shout' (handlers: "
                                       f"{HANDLERS})")
    assert rows[head["wrong"] + 2].startswith("    warning: line 5")
    doc = {e["name"]: e for e in json.loads(omnicore("workflows", "list", "--json", "--app",
                                                     str(app), cwd=tmp_path).stdout)}
    assert doc["later"]["warnings"] and not doc["later"]["problems"]
    assert doc["wrong"]["state"] == "failed" and len(doc["wrong"]["problems"]) == 1


def test_console_shows_the_findings_of_each_workflow(
        tmp_path: Path, browser: Browser) -> None:
    folder = make_app(tmp_path / "app", {"later.yaml": LATER, "wrong.yaml": WRONG})
    app = OmniApp(config_path=folder / "omnicore.yaml", environ={}, entry_points=False,
                  overrides={"console": {"enabled": True, "port": 0,
                                        "password_hash": CHEAP_PASSWORD_HASH}})
    module = ConsoleModule()
    app.add_module(module)
    off_thread(app.start)   # Playwright's loop runs in this thread; start refuses one
    try:
        assert module.console is not None and module.url is not None
        module.console.auth.store.add("admin", PASSWORD, "admin")
        with httpx.Client(base_url=module.url, timeout=30) as c:
            c.get("/login")
            c.post("/login", data={"name": "admin", "password": PASSWORD,
                                   "csrf": c.cookies["omnicore_login_csrf"]})
            listed = {w["name"]: w for w in c.get("/api/v1/workflows").json()["items"]}
            assert listed["later"]["state"] == "loaded"
            assert listed["later"]["warnings"] == [
                "warning: line 5: steps[1].uses: step 'stamp' uses plugin 'stamper', which the app "
                "does not have (plugins: echo); it may be added later or served by another host "
                "of the store: until a host serves it, the step waits queued"]
            assert listed["wrong"]["state"] == "failed"
            assert "step 'shout': plugin 'echo' has no handler 'shout'" in \
                listed["wrong"]["problems"][0]
            page = c.get("/workflows/later").text
            assert "1 warning</span>" in page and "uses plugin &#39;stamper&#39;" in page
            assert "has no handler &#39;shout&#39;" in c.get("/workflows/wrong").text
            assert "1 warning</span>" in c.get("/workflows").text
            for width, height in ((1366, 900), (390, 844)):
                context = browser.new_context(viewport={"width": width, "height": height})
                context.add_cookies([{"name": k, "value": v, "url": module.url}
                                     for k, v in c.cookies.items()])
                page = context.new_page()
                for path in ("/workflows", "/workflows/later", "/workflows/wrong"):
                    page.goto(module.url + path)
                    expect(page.locator("ul.problems li").first).to_be_visible()
                    assert page.evaluate(
                        "document.documentElement.scrollWidth <= window.innerWidth"), path
                    SHOTS.mkdir(parents=True, exist_ok=True)
                    name = path.strip("/").replace("/", "-")
                    page.screenshot(path=str(SHOTS / f"wf-findings-{name}-{width}.png"),
                                    full_page=True)
                expect(page.locator("li.p-error")).to_contain_text("has no handler 'shout'")
                context.close()

            # The plugin arrives: the warning goes, without a restart.
            (folder / "plugins" / "stamper.wasm").write_bytes(echo_wasm("stamper"))
            (folder / "workflows" / "later.yaml").write_text(
                LATER.replace("stamper/stamp", "stamper/version"))
            def reloaded() -> dict[str, Any] | None:
                doc: dict[str, Any] = c.get("/api/v1/workflows/later").json()
                if doc["state"] == "loaded" and not doc["warnings"] and "stamper" in {
                        p["name"] for p in c.get("/api/v1/plugins").json()["items"]}:
                    return doc
                return None

            doc = eventually(reloaded, "later loaded without its warning, stamper served",
                             every=0.2)
            assert doc["warnings"] == [] and doc["problems"] == []
    finally:
        off_thread(app.stop)
