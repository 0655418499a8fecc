"""Private brokers for the bridge tests: Debian's nats-server (JetStream) and mosquitto
(MQTT 5), each with its own data folder and a free loopback port, stopped at the end (as
tests/dbservers.py does for Redis). A missing binary is an error, not a skip: the set-up
installs ``nats-server`` and ``mosquitto``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.dbservers import free_port, listening
from tests.waiting import Logged, eventually

__all__ = ["Mosquitto", "Nats"]


@dataclass
class Nats:
    """A running nats-server with JetStream, token auth, its store under ``root``."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    token: str = "nats-Token-3391"

    @classmethod
    def start(cls) -> Nats:
        if shutil.which("nats-server") is None:
            raise RuntimeError("nats-server not found: install Debian's nats-server")
        root = Path(tempfile.mkdtemp(prefix="omnicore-nats-"))
        server = cls(root, free_port(), None)  # type: ignore[arg-type]
        server.proc = server._spawn()
        return server

    def _spawn(self) -> subprocess.Popen[bytes]:
        log = self.root / "server.log"
        proc = subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd",
             str(self.root / "store"), "--auth", self.token, "-l", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eventually(lambda: listening(self.port), f"nats-server listening on {self.port}",
                   watch=[Logged(proc, log)])
        return proc

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def halt(self) -> None:
        """Stop the process (its store stays, for :meth:`resume`)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)

    def resume(self) -> None:
        self.proc = self._spawn()

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.halt()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Mosquitto:
    """A running mosquitto with a password file and persistence under ``root``."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    user: str = "omnicore"
    password: str = "mqtt-Secret-7719"

    @classmethod
    def start(cls) -> Mosquitto:
        if shutil.which("mosquitto", path="/usr/sbin:/usr/bin") is None:
            raise RuntimeError("mosquitto not found: install Debian's mosquitto")
        root = Path(tempfile.mkdtemp(prefix="omnicore-mqtt-"))
        server = cls(root, free_port(), None)  # type: ignore[arg-type]
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(root / "passwd"), server.user,
                        server.password], check=True, capture_output=True)
        (root / "data").mkdir()
        (root / "mosquitto.conf").write_text(
            f"listener {server.port} 127.0.0.1\nallow_anonymous false\n"
            f"password_file {root / 'passwd'}\npersistence true\n"
            f"persistence_location {root / 'data'}/\nlog_dest file {root / 'server.log'}\n"
            + ("user root\n" if os.geteuid() == 0 else ""))
        server.proc = server._spawn()
        return server

    def _spawn(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(self.root / "mosquitto.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eventually(lambda: listening(self.port), f"mosquitto listening on {self.port}",
                   watch=[Logged(proc, self.root / "server.log")])
        return proc

    @property
    def url(self) -> str:
        return f"mqtt://{self.user}@127.0.0.1:{self.port}"

    def halt(self) -> None:
        """Stop the process (its persisted sessions stay, for :meth:`resume`)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)

    def resume(self) -> None:
        self.proc = self._spawn()

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.halt()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
