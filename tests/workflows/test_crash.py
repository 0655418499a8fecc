"""kill -9 of a child ``omnicore run`` between steps and within a step: the run completes after
a restart, and every step's effect happens once (the upstream drops the repeat delivery by
its idempotency key)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from omnicore import OmniApp
from tests.hosts import Host
from tests.workflows.conftest import app_dir

FLOW = """\
format: omniflow/v1
name: crashy
steps:
  - {id: one, uses: plugin:counter-rust/count, with: {by: 1}}
  - {id: hold, needs: [one], wait: approval}
  - id: call
    needs: [hold]
    uses: connector:ledger
    method: POST
    path: /effects
    with: {amount: 5}
    timeout: 60s
  - {id: two, needs: [call], uses: plugin:counter-rust/count, with: {by: 10}}
outputs: {count: "${{ steps.two.output.count }}", ledger: "${{ steps.call.output.body }}"}
"""


class Ledger:
    """An upstream that applies each Idempotency-Key once; the first request hangs until
    ``release`` so the test can kill the host while the step is inside its call."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.applied: dict[str, int] = {}
        self.first = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                key = self.headers["Idempotency-Key"]
                self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.keys.append(key)
                if len(outer.keys) == 1:
                    outer.first.set()
                    outer.release.wait(60)
                outer.applied.setdefault(key, len(outer.applied) + 1)
                data = json.dumps({"entry": outer.applied[key]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the host that asked was killed

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    led = Ledger()
    yield led
    led.release.set()
    led.server.shutdown()
    led.server.server_close()


def read(db: Path, sql: str) -> Any:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None
    except sqlite3.OperationalError:
        return None  # not created yet
    finally:
        conn.close()


def test_a_run_survives_kill_9_between_and_within_steps(
        tmp_path: Path, built_plugins: dict[str, Path], ledger: Ledger) -> None:
    folder = app_dir(tmp_path / "app", {"counter-rust": built_plugins["counter-rust"]},
                     {"crashy.yaml": FLOW}, extra=f"""\
        connectors:
          ledger: {{base_url: "http://127.0.0.1:{ledger.port}"}}
        """)
    db = folder / "data" / "omnicore.db"
    offline = OmniApp(config_path=folder / "omnicore.yaml", environ={}, entry_points=False)
    offline.workflows.load_folder()
    run_id = offline.workflows.start("crashy", started_by="test").id
    offline.data.close()

    def step(sid: str, col: str = "state") -> Any:
        return read(db, f"SELECT {col} FROM wf_steps WHERE run_id={run_id} AND step='{sid}'")

    hosts: list[Host] = []

    def host() -> Host:
        hosts.append(Host(folder).start())
        return hosts[-1]

    try:
        # 1. Between steps: `one` is done, the run waits for its approval.
        first = host()
        first.until(lambda: step("hold") == "waiting", "the approval")
        first.stop(signal.SIGKILL)
        approve = subprocess.run([sys.executable, "-m", "omnicore.cli", "workflows", "approve",
                                  str(run_id), "hold", "--app", str(folder)],
                                 capture_output=True, text=True, timeout=60)
        assert approve.returncode == 0, approve.stderr
        assert step("call") == "queued"

        # 2. Within a step: the host is killed while `call` waits for the ledger's answer.
        second = host()
        second.until(ledger.first.is_set, "the ledger call")
        assert step("call") == "running"
        second.stop(signal.SIGKILL)
        ledger.release.set()

        # 3. A new host takes the step over once its lease expires, and finishes the run.
        third = host()
        third.until(lambda: read(db, f"SELECT state FROM wf_runs WHERE id={run_id}")
                    == "succeeded", "the run to succeed")
        third.stop()
    finally:
        for each in hosts:
            each.stop(signal.SIGKILL)
    assert step("one", "attempt") == 1 and step("two", "attempt") == 1
    assert step("call", "attempt") == 2                       # delivered twice ...
    assert len(ledger.keys) == 2 and len(set(ledger.keys)) == 1
    assert ledger.applied == {f"crashy/{run_id}/call": 1}     # ... applied once
    outputs = json.loads(read(db, f"SELECT outputs FROM wf_runs WHERE id={run_id}"))
    assert outputs == {"count": 11, "ledger": {"entry": 1}}   # each count step once
    assert read(db, f"SELECT decided_by FROM wf_steps WHERE run_id={run_id} AND "
                    "step='hold'").startswith("cli:")
