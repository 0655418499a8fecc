"""A full disk, for real: a host whose data dir is a small tmpfs (in a private mount
namespace, so no root and nothing outside the test is touched), filled to the last byte."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.console.conftest import ROOT

HOST = r"""
import json, logging, sqlite3, sys
from pathlib import Path
from omnicore import OmniApp
from omnicore.console import ConsoleModule

logging.basicConfig(level=logging.WARNING)
disk = Path(sys.argv[1])
app = OmniApp("full", overrides={"data_dir": str(disk / "data"),
                                 "plugins_dir": str(disk / "plugins"),
                                 "console": {"port": 0}})
module = ConsoleModule()
app.add_module(module)
app.start()
store = module.console.auth.store
store.add("admin", "correct horse battery", "admin")
tokens = [store.new_token("admin", f"t{i}")[0] for i in range(3)]
print(json.dumps({"url": module.url, "tokens": tokens}), flush=True)
filler = disk / "filler"
for line in sys.stdin:
    if line.strip() == "fill":
        for db in ("console.db", "omnicore.db"):  # an empty WAL: the next write must grow it
            with sqlite3.connect(disk / "data" / db) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for size in (65536, 4096, 512, 1):  # to the last scraps
            try:
                with open(filler, "ab", buffering=0) as f:
                    while True:
                        f.write(b"\0" * size)
            except OSError:
                pass
    elif line.strip() == "free":
        filler.unlink()
    print("ok", flush=True)
app.stop()
"""


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _can_mount(),
                                reason="needs unshare and mount (user namespaces) for a tmpfs")


class FullDiskHost:
    def __init__(self, disk: Path) -> None:
        shell = 'mount -t tmpfs -o size=6m tmpfs "$0" && exec "$1" -c "$2" "$0"'
        self.proc = subprocess.Popen(
            ["unshare", "-rm", "sh", "-c", shell, str(disk), sys.executable, HOST],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={"PYTHONPATH": f"{ROOT / 'host'}:{ROOT}", "PATH": "/usr/bin:/bin"})
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        assert first, self.proc.stderr.read() if self.proc.stderr else ""
        info = json.loads(first)
        self.url: str = info["url"]
        self.tokens: list[str] = info["tokens"]

    def command(self, what: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        assert line == "ok", self.proc.stderr.read() if self.proc.stderr and not line else line

    def stop(self) -> str:
        """Stop the host; its log."""
        _out, err = self.proc.communicate(timeout=60)
        return err


@pytest.fixture
def full(tmp_path: Path) -> Iterator[FullDiskHost]:
    h = FullDiskHost(tmp_path)
    try:
        yield h
    finally:
        if h.proc.poll() is None:
            h.proc.kill()
        h.proc.communicate()  # and its pipes closed, whatever happened


def test_a_full_disk_keeps_reads_working_and_refuses_writes_clearly(
        full: FullDiskHost) -> None:
    admin = httpx.Client(base_url=full.url, timeout=30,
                         headers={"Authorization": f"Bearer {full.tokens[0]}"})
    assert admin.put("/api/v1/secrets/BEFORE", json={"value": "kept"}).status_code == 200
    full.command("fill")
    # Every token's first use wants to note the time: none of them may fail for that.
    for token in full.tokens:
        with httpx.Client(base_url=full.url, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            for path in ("/api/v1/info", "/api/v1/secrets", "/api/v1/users", "/api/v1/tokens"):
                r = c.get(path)
                assert r.status_code == 200, (path, r.text)
    assert [s["name"] for s in admin.get("/api/v1/secrets").json()["items"]] == ["BEFORE"]
    # Writes, into the app's storage and into the console's own file: a clear 507.
    writes = [("PUT", "/api/v1/secrets/DURING", {"value": "x" * 4096}),
              ("POST", "/api/v1/users", {"name": "bo", "password": "bo-password-1"}),
              ("POST", "/api/v1/tokens", {"label": "more"})]
    for method, path, body in writes:
        r = admin.request(method, path, json=body)
        assert r.status_code == 507, (path, r.status_code, r.text)
        err = r.json()["error"]
        assert err["type"] in ("DiskFull", "StorageFull") and "full" in err["message"], err
    r = admin.post("/secrets", data={"action": "set", "name": "FORM", "value": "v"})
    assert r.status_code == 507 and "full" in r.text  # the page says it too
    full.command("free")
    for method, path, body in writes:
        r = admin.request(method, path, json=body)
        assert r.status_code in (200, 201), (path, r.status_code, r.text)
    names = [s["name"] for s in admin.get("/api/v1/secrets").json()["items"]]
    assert names == ["BEFORE", "DURING"]  # nothing acknowledged was lost
    admin.close()
    log = full.stop()
    assert "Traceback" not in log, log
    assert log.count("cannot record API tokens' last use") == 1, log
    assert sum("full" in line for line in log.splitlines()) >= 4, log
