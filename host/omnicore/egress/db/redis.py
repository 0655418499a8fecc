"""Redis connectors (specs/abi.md §4.11): a short list of commands, every key under the
plugin's prefix, replies bounded while they are read.

The host speaks RESP2 itself over a pooled socket: a reply's size is known from its header
(``$<len>``, ``*<count>``) before its body is read, so an oversized value or array is refused
without being held (the connection is then closed: the rest of the reply is unread). A key
argument is always the connector's ``key_prefix`` (``{plugin}`` replaced) plus what the
plugin wrote: the plugin names keys below its prefix and nothing else; ``../`` or a key that
spells another prefix stays below its own.
"""

from __future__ import annotations

import base64
import binascii
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from omnicore.egress.db.base import Pool, first_line
from omnicore.egress.db.config import DbConnector, Target
from omnicore.egress.db.sql import dump
from omnicore.egress.redact import Redactor
from omnicore.egress.refused import Refused

__all__ = ["COMMANDS", "RedisBackend"]

# name: (least args, most args or None, which args are keys: "first", "all" or "none")
COMMANDS: dict[str, tuple[int, int | None, str]] = {
    "GET": (1, 1, "first"), "SET": (2, 6, "first"), "SETNX": (2, 2, "first"),
    "GETDEL": (1, 1, "first"), "MGET": (1, None, "all"), "DEL": (1, None, "all"),
    "EXISTS": (1, None, "all"), "INCR": (1, 1, "first"), "INCRBY": (2, 2, "first"),
    "DECR": (1, 1, "first"), "DECRBY": (2, 2, "first"), "EXPIRE": (2, 2, "first"),
    "PEXPIRE": (2, 2, "first"), "TTL": (1, 1, "first"), "PTTL": (1, 1, "first"),
    "PERSIST": (1, 1, "first"), "HGET": (2, 2, "first"), "HSET": (3, None, "first"),
    "HDEL": (2, None, "first"), "HGETALL": (1, 1, "first"), "HINCRBY": (3, 3, "first"),
    "HEXISTS": (2, 2, "first"), "HLEN": (1, 1, "first"), "LPUSH": (2, None, "first"),
    "RPUSH": (2, None, "first"), "LPOP": (1, 2, "first"), "RPOP": (1, 2, "first"),
    "LRANGE": (3, 3, "first"), "LLEN": (1, 1, "first"), "LTRIM": (3, 3, "first"),
    "SADD": (2, None, "first"), "SREM": (2, None, "first"), "SMEMBERS": (1, 1, "first"),
    "SISMEMBER": (2, 2, "first"), "SCARD": (1, 1, "first"), "PUBLISH": (2, 2, "first"),
}
#: Commands that change nothing: run once more on a fresh connection when an idle one was
#: found dead (a write may have run before the connection broke, so it is not repeated).
_READS = frozenset({"GET", "MGET", "EXISTS", "TTL", "PTTL", "HGET", "HGETALL", "HEXISTS",
                    "HLEN", "LRANGE", "LLEN", "SMEMBERS", "SISMEMBER", "SCARD"})
_SET_FLAGS = frozenset({b"NX", b"XX", b"KEEPTTL"})
_SET_VALUED = frozenset({b"EX", b"PX"})
_MAX_LINE = 1 << 16


class _ReplyError(Exception):
    """An error reply (``-ERR ...``): the server's own text."""


class _Conn:
    __slots__ = ("broken", "file", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        self.broken = False

    def close(self) -> None:
        for part in (self.file, self.sock):
            try:
                part.close()
            except OSError:
                pass

    def send(self, args: list[bytes], deadline: float) -> None:
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            out += [b"$%d\r\n" % len(a), a, b"\r\n"]
        self.sock.sendall(b"".join(out))

    def reply(self, budget: _Budget) -> Any:
        line = self.file.readline(_MAX_LINE)
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection lost")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            budget.take(len(rest))
            return rest
        if kind == b"-":
            raise _ReplyError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            budget.take(n)
            data = self.file.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("connection lost")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            budget.items(n)
            return [self.reply(budget) for _ in range(n)]
        raise ConnectionError("the server sent something that is not RESP2")


class _Budget:
    __slots__ = ("connector", "left", "max_bytes", "max_rows")

    def __init__(self, connector: DbConnector) -> None:
        self.connector = connector.name
        self.max_bytes = self.left = connector.max_result_bytes
        self.max_rows = connector.max_rows

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise Refused("TOO_LARGE", f"the reply is larger than {self.max_bytes} bytes "
                                       f"(connector {self.connector}, max_result_bytes)")

    def items(self, n: int) -> None:
        if n > self.max_rows:
            raise Refused("TOO_LARGE", f"the reply has more than {self.max_rows} items "
                                       f"(connector {self.connector}, max_rows)")


def _arg(value: Any, where: str) -> bytes:
    kind = type(value)
    if kind is str:
        return str(value).encode("utf-8", "surrogatepass")
    if kind is int:
        return str(value).encode()
    if kind is dict and len(value) == 1 and isinstance(value.get("$bytes"), str):
        try:
            return base64.b64decode(value["$bytes"], validate=True)
        except binascii.Error:
            raise Refused("INVALID", f"{where}: bad $bytes") from None
    raise Refused("INVALID", f"{where}: a string, an integer or {{\"$bytes\": ...}}")


def _json(value: Any) -> Any:
    if type(value) is bytes:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"$bytes": base64.b64encode(value).decode()}
    if type(value) is list:
        return [_json(v) for v in value]
    return value


def _int(raw: bytes, where: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise Refused("INVALID", f"{where} must be an integer") from None


class RedisBackend:
    """One redis connector: its pool and the commands of §4.11."""

    def __init__(self, connector: DbConnector,
                 read_secret: Callable[[str], bytes | None]) -> None:
        self.connector = connector
        self.name = connector.name
        self._read_secret = read_secret
        self.redactor = Redactor()
        self.pool = Pool(connector.name, connector.pool_size, self._connect)
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def prefix(self, plugin: str) -> bytes:
        return self.connector.key_prefix.replace("{plugin}", plugin).encode()

    def _connect(self, deadline: float) -> _Conn:
        try:
            target = self.connector.target(self._read_secret)
        except LookupError as exc:
            raise Refused("UNAVAILABLE", f"connector {self.name}: {exc}") from None
        if target.password:
            self.redactor.add(target.password)
        conn = _Conn(_socket(target, deadline))
        try:
            budget = _Budget(self.connector)
            if target.password is not None:
                auth = [b"AUTH", *([target.user.encode()] if target.user else []),
                        target.password.encode()]
                conn.send(auth, deadline)
                conn.reply(budget)
            if target.database not in ("", "0"):
                conn.send([b"SELECT", target.database.encode()], deadline)
                conn.reply(budget)
        except BaseException:
            conn.close()
            raise
        return conn

    def command(self, plugin: str, cmd: Any, args: Any, deadline: float) -> bytes:
        """Run one §4.11 command for ``plugin``; the reply as JSON. Refused otherwise."""
        try:
            reply = self._command(plugin, cmd, args, deadline)
            return dump(_json(reply)).encode()
        except Refused as exc:
            if exc.status in ("UNAVAILABLE", "DENIED") and "not allowed" not in str(exc):
                self.last_error = f"{exc.status}: {exc}"
                self.last_error_at = time.time()
            raise

    def _command(self, plugin: str, cmd: Any, args: Any, deadline: float) -> Any:
        if not isinstance(cmd, str) or cmd.upper() not in COMMANDS:
            raise Refused("DENIED", f"redis command {str(cmd)[:40]!r} is not allowed "
                                    f"(connector {self.name})")
        name = cmd.upper()
        if args is None:
            args = []
        if not isinstance(args, list):
            raise Refused("INVALID", "args must be an array")
        least, most, keys = COMMANDS[name]
        if len(args) < least or (most is not None and len(args) > most):
            raise Refused("INVALID", f"{name} takes {least}"
                          + ("" if most == least else f" to {most}" if most else " or more")
                          + f" arguments, got {len(args)}")
        raw = [_arg(a, f"args[{i}]") for i, a in enumerate(args)]
        prefix = self.prefix(plugin)
        if keys == "all":
            raw = [prefix + a for a in raw]
        else:
            raw[0] = prefix + raw[0]
        if name == "SET":
            _check_set(raw[2:])
        if name in ("LPOP", "RPOP") and len(raw) == 2:
            if _int(raw[1], "count") > self.connector.max_rows:
                raise Refused("TOO_LARGE", f"count is over max_rows ({self.connector.max_rows})")
        return self._run(name, raw, deadline)

    def _run(self, name: str, raw: list[bytes], deadline: float) -> Any:
        for attempt in (0, 1):
            try:
                conn, reused = self.pool.acquire(deadline)
            except Refused:
                raise
            except BaseException as exc:
                raise self._failure(exc) from None
            try:
                return self._exchange(conn, name, raw, deadline)
            except BaseException as exc:
                conn.broken = conn.broken or (not isinstance(exc, (_ReplyError,)) and not (
                    isinstance(exc, Refused) and exc.status == "INVALID"))
                # An idle connection that died with a restarted server: once more, afresh.
                if reused and isinstance(exc, (ConnectionError, OSError)) \
                        and not isinstance(exc, TimeoutError):
                    self.pool.discard_idle()  # the others died with it
                    if attempt == 0 and name in _READS:
                        continue
                raise self._failure(exc) from None
            finally:
                self.pool.release(conn)
        raise AssertionError("unreachable")

    def _exchange(self, conn: _Conn, name: str, raw: list[bytes], deadline: float) -> Any:
        budget = _Budget(self.connector)
        max_rows = self.connector.max_rows
        # What could answer with many items is measured first, so it is never read.
        if name == "LRANGE":
            start, stop = _int(raw[1], "start"), _int(raw[2], "stop")
            if start < 0 or stop < 0:
                conn.send([b"LLEN", raw[0]], deadline)
                n = conn.reply(budget)
                start = max(0, start + n if start < 0 else start)
                stop = stop + n if stop < 0 else stop
            if stop - start + 1 > max_rows:
                raise Refused("TOO_LARGE", f"LRANGE of more than {max_rows} items "
                                           f"(connector {self.name}, max_rows)")
            raw = [raw[0], str(start).encode(), str(stop).encode()]
        elif name in ("SMEMBERS", "HGETALL"):
            conn.send([b"SCARD" if name == "SMEMBERS" else b"HLEN", raw[0]], deadline)
            n = conn.reply(budget)
            if isinstance(n, int) and n * (2 if name == "HGETALL" else 1) > max_rows:
                raise Refused("TOO_LARGE", f"{name} of more than {max_rows} items "
                                           f"(connector {self.name}, max_rows)")
        conn.send([name.encode(), *raw], deadline)
        out = conn.reply(budget)
        if name == "HGETALL" and isinstance(out, list):
            return {_field(out[i]): _json(out[i + 1]) for i in range(0, len(out) - 1, 2)}
        return out

    def _failure(self, exc: BaseException) -> Refused:
        if isinstance(exc, Refused):
            return exc
        if isinstance(exc, _ReplyError):
            text = str(exc)
            if text.startswith(("WRONGPASS", "NOAUTH", "ERR invalid password",
                                "ERR AUTH", "ERR Client sent AUTH")):
                return Refused("DENIED", f"authentication failed for connector {self.name}")
            if text.startswith("NOPERM"):
                return Refused("DENIED", f"connector {self.name}: "
                                         f"{first_line(text, self.redactor)}")
            return Refused("INVALID", f"connector {self.name}: {first_line(text, self.redactor)}")
        if isinstance(exc, TimeoutError):
            return Refused("UNAVAILABLE", f"connector {self.name}: timed out")
        if isinstance(exc, ConnectionRefusedError) or (
                isinstance(exc, FileNotFoundError)):
            return Refused("UNAVAILABLE", f"connector {self.name}: connection refused")
        if isinstance(exc, (ConnectionError, OSError, ValueError)):
            return Refused("UNAVAILABLE", f"connector {self.name}: connection lost")
        raise exc

    def stats(self) -> dict[str, Any]:
        return {"in_use": self.pool.in_use, "idle": self.pool.idle,
                "last_error": self.last_error, "last_error_at": self.last_error_at}

    def close(self) -> None:
        self.pool.close()


def _field(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _check_set(options: list[bytes]) -> None:
    i = 0
    while i < len(options):
        flag = options[i].upper()
        if flag in _SET_VALUED and i + 1 < len(options):
            _int(options[i + 1], flag.decode())
            i += 2
        elif flag in _SET_FLAGS:
            i += 1
        else:
            raise Refused("INVALID", "SET takes EX n, PX n, NX, XX or KEEPTTL")


def _socket(target: Target, deadline: float) -> socket.socket:
    timeout = max(0.001, deadline - time.monotonic())
    if target.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(target.socket)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((target.host, target.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if target.tls:
        return ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
    return sock
