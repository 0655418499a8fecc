"""A step's input its handler's ``input_schema`` does not name is an error of ``omnicore
workflows validate`` (and of the console editor's problems: the same validator). Handlers
ignore inputs they do not know (specs/abi.md §2.7), so a misspelt input would otherwise be a
silent bug. A schema that accepts other names (``additionalProperties: true`` or a schema, a
composed schema) accepts anything: nothing is reported for it.

Real plugins, built with the real JS toolchain: the github-issues example (``issues`` takes
``state`` and ``limit``; ``open`` takes ``title``, ``body`` and ``labels``) and a small one
whose handler's schema leaves additional properties open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from omnicore.sandbox.wasmbin import custom_sections
from omnicore.toolchains import build, js
from omnicore.workflows.entries import WorkflowEntries
from omnicore.workflows.validation import known_inputs, validate

ROOT = Path(__file__).resolve().parents[2]

FLOW = """\
format: omniflow/v1
name: triage
steps:
  - id: list
    uses: plugin:github-issues-js/issues
    with:
      state: open
      limt: 5
  - id: file
    uses: plugin:github-issues-js/open
    with: {title: "Flaky test", body: "${{ steps.list.output }}", lables: [ci], colour: red}
  - id: tag
    uses: plugin:open-js/tag
    with: {anything: 1, goes: "${{ steps.file.output.number }}"}
  - id: free
    uses: plugin:github-issues-js/open
    with: "${{ steps.list.output }}"
"""

OPEN_PLUGIN = {
    "plugin.js": "export function tag(input) { return input; }\n",
    "omnicore.toml": """\
[plugin]
name = "open-js"
version = "0.1.0"
handlers = ["tag"]

[plugin.handler.tag.input_schema]
type = "object"
properties = { name = { type = "string" } }
additionalProperties = true
""",
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An app folder with two real plugins built from source."""
    why = js.check()
    if why is not None:
        pytest.skip(f"JS toolchain: {why}")
    root = tmp_path_factory.mktemp("unknown-inputs")
    (root / "workflows").mkdir()
    build(ROOT / "plugins" / "github-issues" / "js", root / "plugins")
    src = root / "open-src"
    src.mkdir()
    for name, text in OPEN_PLUGIN.items():
        (src / name).write_text(text)
    build(src, root / "plugins")
    (root / "omnicore.yaml").write_text(
        "name: inputs\ndata_dir: data\nplugins_dir: plugins\nconsole: {enabled: false}\n"
        "workflows: {dir: workflows}\n")
    return root


def omnicore(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real ``omnicore`` command in a subprocess (this checkout's source first)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "host"),
           "OMNICORE_CACHE_DIR": str(cwd / "module-cache")}
    return subprocess.run([sys.executable, "-m", "omnicore.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_validate_names_each_misspelt_input_on_its_line(app: Path, tmp_path: Path) -> None:
    flow = tmp_path / "triage.yaml"
    flow.write_text(FLOW)
    done = omnicore("workflows", "validate", str(flow), "--app", str(app), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"{flow}: error: line 8: steps[0].with.limt: step 'list': handler "
        "github-issues-js/issues has no input 'limt' (did you mean 'limit'?)",
        f"{flow}: error: line 11: steps[1].with.lables: step 'file': handler "
        "github-issues-js/open has no input 'lables' (did you mean 'labels'?)",
        f"{flow}: error: line 11: steps[1].with.colour: step 'file': handler "
        "github-issues-js/open has no input 'colour' (it takes 'body', 'labels', 'title')",
    ]  # step 'tag' (additionalProperties: true) and 'free' (one expression): nothing

    flow.write_text(FLOW.replace("limt", "limit").replace("lables", "labels")
                    .replace(", colour: red", ""))
    done = omnicore("workflows", "validate", str(flow), "--app", str(app), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_the_editors_problems_name_the_step(app: Path) -> None:
    """The console editor's verdict (validate with the running host's schemas, as
    console/workflow_editor.py calls it) ties each unknown input to its step's node."""
    schemas: dict[str, dict[str, Any]] = {}
    for wasm in (app / "plugins").glob("*.wasm"):
        manifest = json.loads(custom_sections(wasm.read_bytes(), "omnicore.manifest")[0])
        schemas[manifest["name"]] = {h["name"]: h["input_schema"] for h in manifest["handlers"]
                                     if isinstance(h, dict) and "input_schema" in h}
    verdict = validate(FLOW, "triage.yaml", WorkflowEntries(lambda: (None, None), lambda w: None),
                       plugins={"github-issues-js": ["issues", "open"], "open-js": ["tag"]},
                       schemas=schemas)
    assert not verdict.ok
    found = verdict.as_dict(yaml.safe_load(FLOW))["problems"]
    assert [(p["step"], p["path"]) for p in found] == [
        ("list", "steps[0].with.limt"), ("file", "steps[1].with.lables"),
        ("file", "steps[1].with.colour")]


@pytest.mark.parametrize(("schema", "known"), [
    ({"type": "object", "properties": {"a": {}}}, {"a"}),
    ({"type": "object", "properties": {"a": {}}, "additionalProperties": False}, {"a"}),
    ({"type": "object", "properties": {"a": {}}, "additionalProperties": True}, None),
    ({"type": "object", "properties": {"a": {}}, "additionalProperties": {"type": "number"}},
     None),
    ({"type": "object", "properties": {"a": {}}, "patternProperties": {"^x": {}}}, None),
    ({"type": "object", "properties": {"a": {}}, "allOf": [{"properties": {"b": {}}}]}, None),
    ({"type": "object", "properties": {"a": {}}, "unevaluatedProperties": True}, None),
    ({"type": "object", "properties": {}}, None),
    ({"type": "object", "required": ["a"]}, None),
])
def test_which_schemas_name_every_input(schema: dict[str, Any], known: set[str] | None) -> None:
    assert known_inputs(schema) == (None if known is None else frozenset(known))
