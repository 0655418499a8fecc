"""The seed's two examples, verbatim, in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SEED_APP = """\
from omnicore.core.app import OmniApp
from omnicore.modules.health import HealthModule
app = OmniApp("example-app")
health = HealthModule()
app.add_module(health)
app.start()
print(health.check())
app.stop()
"""

SEED_TASKS = """\
import asyncio
from omnicore.runtime.tasks import TaskEngine
engine = TaskEngine(workers=2)
async def job():
    print("Running async job")
async def main():
    await engine.start()
    await engine.submit(job)
    await engine.stop()
asyncio.run(main())
"""


def _run(code: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_seed_app_example(tmp_path: Path) -> None:
    out = _run(SEED_APP, tmp_path)
    report = json.loads(out)
    assert report["status"] == "healthy"
    assert {"app", "modules", "extensions"} <= set(report["components"])
    assert (tmp_path / ".omnicore").is_dir()


def test_seed_task_example(tmp_path: Path) -> None:
    assert _run(SEED_TASKS, tmp_path) == "Running async job\n"
