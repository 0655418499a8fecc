"""``omnicore workflows``: validate, list, show, run (served here), runs, cancel, restart."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from omnicore.cli import main
from tests.workflows.conftest import app_dir

ROOT = Path(__file__).resolve().parents[2]
GATED = """\
format: omniflow/v1
name: gated
steps:
  - {id: greet, uses: plugin:greeter-rust/greet, with: {name: "${{ inputs.name }}"}}
  - {id: ok, needs: [greet], wait: approval}
"""


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate(tmp_path: Path) -> None:
    good = ROOT / "examples" / "workflows" / "text-report.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: omniflow/v1\nname: b\nsteps:\n  - {id: a, uses: plugin:p/h, "
                   "needs: [zz]}\n")
    code, out, err = cli("workflows", "validate", str(good), str(bad))
    assert code == 1
    assert "text-report.yaml: ok — workflow text-report, 3 step(s)" in out
    assert "line 4: steps[0].needs: unknown step 'zz'" in err


def test_run_list_show_runs_cancel_restart(tmp_path: Path,
                                           built_plugins: dict[str, Path]) -> None:
    text = (ROOT / "examples" / "workflows" / "text-report.yaml").read_text()
    folder = app_dir(tmp_path / "app", built_plugins, {"text-report.yaml": text,
                                                       "gated.yaml": GATED})
    app = ["--app", str(folder)]
    code, out, _ = cli("workflows", "run", "text-report", "--set", "name=Ada", "--json", *app)
    assert code == 0, out
    doc = json.loads(out)
    assert doc["state"] == "succeeded" and doc["outputs"]["message"] == "Hello, Ada!"
    code, out, _ = cli("workflows", "list", *app)
    assert code == 0 and "text-report" in out and "1 run(s)" in out and "gated" in out
    code, out, _ = cli("workflows", "show", "text-report", *app)
    assert "step stats" in out and "trigger hourly: cron 0 * * * * (Europe/Paris)" in out
    code, out, err = cli("workflows", "run", "text-report", "-i", '{"name": 5}', *app)
    assert code == 1 and "input name: 5 is not of type 'string'" in err

    code, _, err = cli("workflows", "run", "gated", "--set", "name=Bo", "--no-wait", *app)
    assert code == 0 and err.startswith("run 2 of gated: running")
    code, out, _ = cli("workflows", "cancel", "2", *app)
    assert code == 0 and "run 2: cancelled" in out
    code, out, _ = cli("workflows", "runs", *app)
    assert out.splitlines()[0].split()[:3] == ["2", "gated", "cancelled"]
    code, out, _ = cli("workflows", "restart", "2", *app)
    assert code == 0 and "run 2: running again" in out
    code, out, _ = cli("workflows", "runs", "--run", "2", "--history", *app)
    assert "run.restarted" in out and "greet" in out
    code, out, err = cli("workflows", "approve", "2", "greet", *app)
    assert code == 1 and "no step 'greet' waiting for an approval" in err
    code, out, _ = cli("workflows", "cancel", "2", *app)
    # Served here until only its approval is left; the hint says the --app it was given.
    code, out, _ = cli("workflows", "restart", "2", "--wait", *app)
    assert f"waiting for approval: omnicore workflows approve 2 ok --app {folder}" in out, out
    code, out, _ = cli("workflows", "approve", "2", "ok", *app)
    assert code == 0, out
