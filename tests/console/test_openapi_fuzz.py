"""schemathesis against the OpenAPI document of a running host, authenticated: whatever it
generates, the API answers without a server error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.console.conftest import Host

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_no_server_errors_under_schemathesis(host: Host, tmp_path: Path) -> None:
    host.app.plugins.grant("greeter-rust", "config")
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "HOME": str(tmp_path)}
    cmd = [str(SCHEMATHESIS), "run", f"{host.url}/api/v1/openapi.json",
           # The local token is not stored in the users table, so no generated DELETE of a
           # token id can revoke the one the run is using.
           "-H", f"Authorization: Bearer {host.module.console.auth.local_token}",  # type: ignore[union-attr]
           "--checks", "not_a_server_error", "--max-examples", "25", "--workers", "1",
           "--exclude-path", "/api/v1/stream",  # endless SSE streams
           "--exclude-path", "/api/v1/live",
           "--generation-database", "none", "--report-dir", str(tmp_path / "report")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "✅ Fuzzing" in out and " passed" in out
    assert "failed" not in out.split("Test cases:")[-1]
