"""Private brokers for the bridge tests: Debian's nats-server (JetStream), mosquitto (MQTT 5)
and rabbitmq-server (AMQP 0-9-1), each with its own data folder and free loopback ports,
stopped at the end (as tests/dbservers.py does for Redis). A missing binary is an error, not a
skip: the set-up installs ``nats-server``, ``mosquitto`` and ``rabbitmq-server``.

One starter shape (:class:`Server`): ``start()`` makes the folder and runs ``prepare()`` once,
``_spawn()`` starts ``command()`` with ``env()`` and waits until the port listens (a process
that exits first fails the wait with its log's tail), ``halt()``/``resume()`` stop it and
start it again on the same data (an outage), ``stop()`` ends it and removes the folder. Each
server runs in a process group of its own, ended whole.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import ClassVar, Self

from tests.dbservers import free_port, listening
from tests.waiting import Logged, eventually

__all__ = ["Mosquitto", "Nats", "RabbitMQ", "Server"]


class Server:
    """A broker process of one kind on ``port`` of 127.0.0.1, its files under ``root``."""

    #: The program the set-up installs, and the Debian package it comes in.
    program: ClassVar[str]
    package: ClassVar[str]
    #: Where the program is looked for (mosquitto lives in /usr/sbin).
    path: ClassVar[str | None] = None
    #: How long it may take to listen (Erlang boots slowly on a loaded machine).
    boot_s: ClassVar[float] = 60.0

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls) -> Self:
        if shutil.which(cls.program, path=cls.path) is None:
            raise RuntimeError(f"{cls.program} not found: install Debian's {cls.package} "
                               "(scripts/dev setup)")
        server = cls(Path(tempfile.mkdtemp(prefix=f"omnicore-{cls.package}-")))
        try:
            server.prepare()
            server._spawn()
        except BaseException:
            server.stop()
            raise
        return server

    # -- what a kind says -------------------------------------------------------------------

    def prepare(self) -> None:
        """Write the config and what the first start needs (once)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    # -- the shared lifecycle ---------------------------------------------------------------

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(self.command(), env=self.env(), cwd=self.root,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        eventually(lambda: listening(self.port), f"{self.program} listening on {self.port}",
                   timeout=self.boot_s, watch=[Logged(self.proc, self.log)])

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def halt(self) -> None:
        """Stop the process (its data stays, for :meth:`resume`)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        # What it started (Erlang's helpers) goes with it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def resume(self) -> None:
        self._spawn()

    def stop(self) -> None:
        try:
            self.halt()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class Nats(Server):
    """A running nats-server with JetStream, token auth, its store under ``root``."""

    program = package = "nats-server"
    token = "nats-Token-3391"

    def command(self) -> list[str]:
        return ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd",
                str(self.root / "store"), "--auth", self.token, "-l", str(self.log)]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


class Mosquitto(Server):
    """A running mosquitto with a password file and persistence under ``root``."""

    program = package = "mosquitto"
    path = "/usr/sbin:/usr/bin"
    user = "omnicore"
    password = "mqtt-Secret-7719"

    def prepare(self) -> None:
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(self.root / "passwd"), self.user,
                        self.password], check=True, capture_output=True)
        (self.root / "data").mkdir()
        (self.root / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\n"
            f"password_file {self.root / 'passwd'}\npersistence true\n"
            f"persistence_location {self.root / 'data'}/\nlog_dest file {self.log}\n"
            + ("user root\n" if os.geteuid() == 0 else ""))

    def command(self) -> list[str]:
        return ["/usr/sbin/mosquitto", "-c", str(self.root / "mosquitto.conf")]

    @property
    def url(self) -> str:
        return f"mqtt://{self.user}@127.0.0.1:{self.port}"


class RabbitMQ(Server):
    """A running RabbitMQ node of its own: its name, AMQP and distribution ports, cookie
    (``HOME``), database, logs and config under ``root``; no plugin enabled.

    Erlang's port mapper is this broker's own too: an ``epmd`` started in the foreground on a
    free port (``ERL_EPMD_PORT``), so nodes started in parallel (xdist workers, other
    checkouts) never meet in a shared one on 4369, and it ends with the broker instead of
    living on as a daemon. The node listens for AMQP and distribution on 127.0.0.1 only, and
    its schedulers do not busy-wait (an idle broker costs no CPU). RabbitMQ takes seconds to
    boot: a test session starts one per worker (tests/bridges/conftest.py).
    """

    program = package = "rabbitmq-server"
    path = "/usr/lib/rabbitmq/bin:/usr/sbin"
    boot_s = 120.0
    user = "omnicore"
    password = "amqp-Secret-5521"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"omnicore-{self.port}@localhost"
        self.epmd: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "log" / "rabbit.log"

    def prepare(self) -> None:
        (self.root / "log").mkdir()
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"default_user = {self.user}\ndefault_pass = {self.password}\n"
            f"log.file = {self.log}\nlog.file.level = info\nlog.console = false\n"
            # /tmp of a busy machine must not stop publishers with a disk alarm.
            "disk_free_limit.absolute = 1MB\n")

    def env(self) -> dict[str, str]:
        root = str(self.root)
        return {**os.environ, "HOME": root, "ERL_EPMD_PORT": str(self.epmd_port),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": f"{root}/rabbitmq.conf",
                "RABBITMQ_ADVANCED_CONFIG_FILE": f"{root}/advanced.config",
                "RABBITMQ_CONF_ENV_FILE": f"{root}/rabbitmq-env.conf",
                "RABBITMQ_ENABLED_PLUGINS_FILE": f"{root}/enabled_plugins",
                "RABBITMQ_MNESIA_BASE": f"{root}/mnesia", "RABBITMQ_LOG_BASE": f"{root}/log",
                "RABBITMQ_PID_FILE": f"{root}/rabbit.pid",
                "RABBITMQ_SCHEDULER_BUSY_WAIT_THRESHOLD": "none",
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                    "-kernel inet_dist_use_interface {127,0,0,1}"}

    def command(self) -> list[str]:
        # The package's script itself, not /usr/sbin's wrapper (it would switch to the
        # rabbitmq user and to /var/lib/rabbitmq).
        return ["/usr/lib/rabbitmq/bin/rabbitmq-server"]

    def _spawn(self) -> None:
        if self.epmd is None or self.epmd.poll() is not None:
            self.epmd = subprocess.Popen(
                ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            eventually(lambda: listening(self.epmd_port), f"epmd on {self.epmd_port}",
                       watch=[self.epmd])
        super()._spawn()

    @property
    def url(self) -> str:
        return f"amqp://{self.user}@127.0.0.1:{self.port}/"

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            epmd, self.epmd = self.epmd, None
            if epmd is not None and epmd.poll() is None:
                epmd.terminate()
                epmd.wait(30)
