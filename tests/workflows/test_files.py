"""Definition files written only over what was read, the replaced text kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicore.workflows.entries import WorkflowEntries
from omnicore.workflows.errors import FileChanged, WorkflowError
from omnicore.workflows.files import HISTORY, WorkflowFiles, digest


def test_write_history_and_restore(tmp_path: Path) -> None:
    files = WorkflowFiles(tmp_path)
    path = tmp_path / "flow.yaml"
    assert files.read(path) == ("", "")
    first = files.write(path, "v1\n", None)
    assert first == digest("v1\n") and files.history(path) == []
    second = files.write(path, "v2\n", first)
    kept = files.history(path)
    assert [k["digest"] for k in kept] == [first]
    text, third = files.restore(path, str(kept[0]["id"]), second)
    assert text == "v1\n" == path.read_text() and third == first
    assert [k["digest"] for k in files.history(path)] == [second, first]
    with pytest.raises(WorkflowError, match="no kept version"):
        files.version(path, "../flow.yaml")


def test_a_file_changed_on_disk_is_not_overwritten(tmp_path: Path) -> None:
    files = WorkflowFiles(tmp_path)
    path = tmp_path / "flow.yaml"
    read = files.write(path, "mine\n", None)
    path.write_text("theirs\n")
    with pytest.raises(FileChanged, match="changed on disk") as caught:
        files.write(path, "mine again\n", read)
    assert caught.value.current == digest("theirs\n") and path.read_text() == "theirs\n"
    with pytest.raises(FileChanged, match="was created"):
        files.write(path, "new\n", None)
    path.unlink()
    with pytest.raises(FileChanged, match="was removed"):
        files.write(path, "new\n", read)


def test_the_folder_scan_skips_the_history_and_half_written_files(tmp_path: Path) -> None:
    files = WorkflowFiles(tmp_path)
    path = tmp_path / "flow.yaml"
    text = "format: omniflow/v1\nname: flow\nsteps: [{id: a, wait: approval}]\n"
    files.write(path, text, files.write(path, text, None))
    (tmp_path / ".flow.yaml.saving").write_text("half")
    assert (tmp_path / HISTORY / "flow").is_dir()
    entries = WorkflowEntries(lambda: (None, None), lambda wf: None)
    entries.scan(tmp_path)
    assert [(e.name, e.state) for e in entries] == [("flow", "loaded")]
