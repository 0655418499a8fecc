"""Route handlers are handlers: ``omnicore build`` lists the Python SDK's ``@routes.handler``
functions and the Ruby SDK's ``Omnicore.handler :name, route: true`` blocks in the plugin's
manifest like any other handler, so ``omnicore inspect`` shows them and an operator can map a
route to them. Read without running the sources (toolchains/python.py, toolchains/ruby)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from omnicore.toolchains import build, python
from omnicore.toolchains.ruby import source as ruby_source
from tests.compiler import COMPILER

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = '''\
"""A plain handler beside route handlers declared every way the SDK allows."""

from omnicore_plugin import handler, routes
from omnicore_plugin.routes import Request, Response
from omnicore_plugin.routes import handler as route


@handler
def ping(data: bytes) -> bytes:
    return b"pong"


@routes.handler
def hello(req: Request) -> Response:
    """Says hello."""
    return Response.text("hello")


@routes.handler(name="items", title="Items")
def list_items(req: Request) -> Response:
    return Response.json({"items": []})


@route
def renamed(req: Request) -> Response:
    return Response.text(req.path)
'''


def test_python_route_handlers_are_found_in_the_sources(tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text(PLUGIN)
    assert python.handler_names(tmp_path) == ["ping", "hello", "items", "renamed"]
    described = python.handler_descriptions(tmp_path)
    assert described["hello"] == {"description": "Says hello."}
    assert described["items"]["title"] == "Items"


def test_ruby_route_handlers_are_found_in_the_sources(tmp_path: Path) -> None:
    (tmp_path / "plugin.rb").write_text(
        'require "omnicore"\n\n'
        'Omnicore.handler :ping do |input|\n  "pong"\nend\n\n'
        'Omnicore.handler :hello, route: true, title: "Hello" do |req|\n'
        '  Omnicore::Route::Response.text("hello")\nend\n\n'
        'Omnicore.handler(:items, route: true) do |req|\n'
        '  Omnicore::Route::Response.json({ items: [] })\nend\n')
    assert ruby_source.handler_names(tmp_path) == ["ping", "hello", "items"]
    assert ruby_source.handler_descriptions(tmp_path) == {"hello": {"title": "Hello"}}


def test_a_built_python_plugin_lists_its_route_handlers_in_omnicore_inspect(
        tmp_path: Path, module_cache: Path) -> None:
    why = python.check()
    if why is not None:
        pytest.skip(f"python toolchain: {why}")
    src = tmp_path / "routes-py"
    src.mkdir()
    (src / "plugin.py").write_text(PLUGIN)
    wasm = build(src, tmp_path / "out", name="routes-py")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "host"),
           "OMNICORE_CACHE_DIR": str(module_cache), "OMNICORE_SANDBOX__COMPILER": COMPILER}
    done = subprocess.run([sys.executable, "-m", "omnicore.cli", "inspect", str(wasm), "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"], report["error"]
    assert report["handlers"] == ["ping", "hello", "items", "renamed"]
    entries = {e["name"] if isinstance(e, dict) else e: e for e in report["manifest"]["handlers"]}
    assert set(entries) == {"ping", "hello", "items", "renamed"}
    assert entries["hello"]["description"] == "Says hello."
    assert entries["items"]["title"] == "Items"
