"""The storage interface's names: the durable queue row is a job, and the names it had as a
task still import, each with a DeprecationWarning naming its successor."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from omnicore import storage
from omnicore.storage import base


@pytest.mark.parametrize(("module", "old", "new"), [
    ("omnicore.storage", "Task", "Job"),
    ("omnicore.storage", "TaskSpec", "JobSpec"),
    ("omnicore.storage", "TaskQueue", "JobQueue"),
    ("omnicore.storage", "PluginTasks", "PluginJobs"),
    ("omnicore.storage.base", "TaskState", "JobState"),
    ("omnicore.storage.base", "TASK_STATES", "JOB_STATES"),
])
def test_an_old_name_is_the_new_object_with_a_deprecation_warning(
        module: str, old: str, new: str) -> None:
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"{module}.{old} is deprecated: use "
                                                f"{module}.{new}"):
        assert getattr(mod, old) is getattr(mod, new)
    assert old not in mod.__all__ and new in mod.__all__


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        _ = storage.Nothing  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        _ = storage.TaskState  # never exported at the package's top: no alias either


def test_storage_tasks_is_storage_jobs_with_a_deprecation_warning(tmp_path: Path) -> None:
    store = storage.SQLiteStorage(tmp_path / "omnicore.db")
    try:
        with pytest.warns(DeprecationWarning, match=r"Storage.tasks\(\) is deprecated"):
            old = store.tasks("p")
        assert isinstance(old, base.PluginJobs) and old.plugin == "p"
        job = old.enqueue("h", b"", 0.0, max_attempts=1, backoff_ms=1, max_queued=10)
        found = store.jobs("p").get(job)
        assert found is not None and found.state == "queued"
    finally:
        store.close()


def test_a_store_a_backend_does_not_serve_is_a_config_error_naming_it(tmp_path: Path) -> None:
    # specs/host.md: a store a backend does not serve keeps Storage's default.
    from omnicore.errors import ConfigError

    class Partial(storage.SQLiteStorage):
        memory = base.Storage.memory  # as if this backend did not serve memory yet

    store = Partial(tmp_path / "omnicore.db")
    try:
        with pytest.raises(ConfigError, match="memory needs a storage backend that serves it; "
                                              "Partial does not yet"):
            _ = store.memory
        assert store.vectors is store.vectors  # the others still served, built once
    finally:
        store.close()
    assert "memories" in (base.Storage.memory.__doc__ or "")
