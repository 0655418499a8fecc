"""The workflow editor's REST API: read, check, save (admins only, never over a changed
file, a diff in the audit log), history and restore, the palette."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.console.test_workflow_editor import NOTES, editing

__all__ = ["editing"]

FILE = "/api/v1/workflows/notes/file"


def clients(module: ConsoleModule) -> tuple[httpx.Client, httpx.Client]:
    assert module.console is not None and module.url is not None
    store = module.console.auth.store
    admin, _ = store.new_token("ada", "api")
    viewer, _ = store.new_token("vic", "api")
    return tuple(httpx.Client(base_url=module.url, headers={"Authorization": f"Bearer {t}"})
                 for t in (admin, viewer))  # type: ignore[return-value]


def test_read_check_save_and_restore(editing: tuple[OmniApp, ConsoleModule]) -> None:
    app, module = editing
    admin, viewer = clients(module)
    path = Path(app.workflows.settings.dir) / "notes.yaml"
    opened = viewer.get(FILE).json()
    assert opened["text"] == NOTES and opened["exists"] and opened["ok"]
    assert opened["document"] == yaml.safe_load(NOTES)
    doc = opened["document"]

    doc["steps"][0]["with"] = {"name": "${{ inputs.who + }}"}
    checked = viewer.post(f"{FILE}/validate", json={"document": doc}).json()
    assert not checked["ok"] and checked["problems"][0]["step"] == "hello"
    refused = admin.put(FILE, json={"document": doc, "digest": opened["digest"]})
    assert refused.status_code == 422
    assert refused.json()["error"]["problems"][0]["path"] == "steps[0].with.name"
    assert path.read_text() == NOTES

    doc["steps"][0]["with"] = {"name": "everyone"}
    assert viewer.put(FILE, json={"document": doc, "digest": opened["digest"]}
                      ).status_code == 403
    renamed = {**doc, "name": "other"}
    assert admin.put(FILE, json={"document": renamed, "digest": opened["digest"]}
                     ).status_code == 422
    saved = admin.put(FILE, json={"document": doc, "digest": opened["digest"]})
    assert saved.status_code == 200, saved.text
    assert "# who is greeted" in path.read_text()
    assert app.workflows.entries.get("notes").document["steps"][0]["with"] == {
        "name": "everyone"}
    again = admin.put(FILE, json={"document": doc, "digest": opened["digest"]})
    assert again.status_code == 409 and again.json()["error"]["type"] == "FileChanged"
    entry = app.storage.audit.entries(action_prefix="workflow.")[0]
    assert entry.actor == "ada" and '+    with: {name: "everyone"}' in entry.after["diff"]

    kept = viewer.get(f"{FILE}/history").json()["items"]
    assert [k["digest"] for k in kept] == [opened["digest"]]
    body = {"id": kept[0]["id"], "digest": saved.json()["digest"]}
    assert viewer.post(f"{FILE}/restore", json=body).status_code == 403
    restored = admin.post(f"{FILE}/restore", json=body)
    assert restored.status_code == 200 and path.read_text() == NOTES
    assert app.storage.audit.entries(action_prefix="workflow.")[0].action == "workflow.restore"

    fresh = admin.get("/api/v1/workflows/fresh/file").json()
    assert not fresh["exists"] and fresh["digest"] is None
    created = admin.put("/api/v1/workflows/fresh/file", json={"digest": None, "document": {
        "format": "omniflow/v1", "name": "fresh", "steps": [{"id": "ok", "wait": "approval"}]}})
    assert created.status_code == 200 and "fresh" in app.workflows.entries
    assert admin.get("/api/v1/workflows/Bad.Name/file").status_code == 404

    # A file that does not parse opens with its problem and can be replaced (its text kept).
    broken = path.with_name("broken.yaml")
    broken.write_text("steps: [unclosed\n")
    opened = admin.get("/api/v1/workflows/broken/file").json()
    assert opened["exists"] and opened["document"] is None and not opened["ok"]
    assert "not valid YAML" in opened["problems"][0]["message"]
    fixed = {"format": "omniflow/v1", "name": "broken", "steps": [{"id": "ok", "wait": "approval"}]}
    replaced = admin.put("/api/v1/workflows/broken/file",
                         json={"digest": opened["digest"], "document": fixed})
    assert replaced.status_code == 200, replaced.text
    kept = admin.get("/api/v1/workflows/broken/file/history").json()["items"]
    assert [k["digest"] for k in kept] == [opened["digest"]]
    admin.close()
    viewer.close()


def test_the_palette_lists_handlers_with_their_schemas(
        editing: tuple[OmniApp, ConsoleModule]) -> None:
    _, module = editing
    admin, viewer = clients(module)
    found = viewer.get("/api/v1/workflow-palette").json()
    greeter = next(p for p in found["plugins"] if p["name"] == "greeter-rust")
    greet = next(h for h in greeter["handlers"] if h["name"] == "greet")
    assert greet["input_schema"]["properties"]["name"]["type"] == "string"
    assert greet["output_schema"]["required"] == ["message"]
    assert found["workflows"] == ["notes"]
    admin.close()
    viewer.close()
