"""``omnicore new plugin --template http`` (Go, Rust, JS) and ``omnicore test --http``
(issue 65, deliverable 2): the scaffold builds with the real toolchain, ``omnicore test
--http`` prints its decoded answer, and a real host serving the route its ``routes.yaml``
maps answers a real HTTP client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from omnicore.cli import main as cli
from tests.routes.conftest import RouteHost

pytestmark = pytest.mark.toolchain


@pytest.mark.parametrize("lang", ["rust", "go", "js"])
def test_the_http_template_builds_answers_and_is_served(
        lang: str, tmp_path: Path, route_host: Callable[..., RouteHost]) -> None:
    from omnicore.toolchains import build, go, js, rust

    problem = {"rust": rust, "go": go, "js": js}[lang].check()
    if problem:
        pytest.skip(f"the {lang} toolchain: {problem}")
    name = f"hi-{lang}"
    runner = CliRunner()
    made = runner.invoke(cli, ["new", "plugin", name, "--lang", lang, "--template", "http",
                               "--dir", str(tmp_path)])
    assert made.exit_code == 0, made.output
    assert f"omnicore test {tmp_path / name} --http 'GET /{name}/hello/Ada'" in made.output
    project = tmp_path / name

    sent = runner.invoke(cli, ["test", str(project), "--http",
                               f"GET /{name}/hello/Ada?greeting=Hej", "-H", "X-Trace: 1"])
    assert sent.exit_code == 0, sent.output
    lines = sent.output.splitlines()
    assert lines[0] == "HTTP 200"
    assert {"content-type: application/json", "cache-control: no-store"} <= set(lines)
    assert lines[-1] == '{"message":"Hej, Ada!"}'

    wasm = build(project, tmp_path / "out")
    routes = yaml.safe_load((project / "routes.yaml").read_text())["serve"]["routes"]
    host = route_host(plugins={wasm.name: wasm.read_bytes()}, routes=routes)
    r = host.client.get(f"/http/{name}/hello/Ada", params={"greeting": "Hej"})
    assert r.status_code == 200 and r.json() == {"message": "Hej, Ada!"}
    assert host.client.post(f"/http/{name}/hello/Ada").status_code == 405


def test_test_http_refuses_what_it_cannot_send(tmp_path: Path) -> None:
    """The request line is checked before anything is built."""
    project = tmp_path / "p"
    project.mkdir()
    (project / "omnicore.toml").write_text('[plugin]\nname = "p"\nhandlers = ["a", "b"]\n')
    (project / "plugin.js").write_text("export function a() {}\nexport function b() {}\n")
    runner = CliRunner()
    bad = runner.invoke(cli, ["test", str(project), "--http", "/no-method"])
    assert bad.exit_code == 2 and "METHOD /PATH?QUERY" in bad.output
    which = runner.invoke(cli, ["test", str(project), "--http", "GET /x"])
    assert which.exit_code == 2 and "--handler" in which.output
    alone = runner.invoke(cli, ["test", str(project), "-d", "body"])
    assert alone.exit_code == 2 and "go with --http" in alone.output
