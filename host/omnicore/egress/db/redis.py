"""Redis connectors (specs/abi.md §4.11): a short list of commands, every key under the
plugin's prefix, replies bounded while they are read.

The host speaks RESP2 itself over a pooled socket: a reply's size is known from its header
(``$<len>``, ``*<count>``) before its body is read, so an oversized value or array is refused
without being held (the connection is then closed: the rest of the reply is unread). Every
element counts, a nil or an integer as much as a string (:class:`_Budget`). A key argument is
always the connector's ``key_prefix`` (``{plugin}`` replaced) plus what the plugin wrote: the
plugin names keys below its prefix and nothing else; ``../`` or a key that spells another
prefix stays below its own.

A command that deletes what it answers (GETDEL, LPOP, RPOP) would lose the data if its answer
were refused after it ran: it runs as the host's script :data:`_TAKE`, which measures the
answer on the server and deletes nothing when it is over the cap.

No allowed command leaves state on the connection (specs/abi.md §4.11.1): a pooled
connection passes from one plugin to another without a reset.
"""

from __future__ import annotations

import base64
import binascii
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from omnicore.egress.db.base import (
    WATCHDOG,
    Pool,
    Watchdog,
    connection_target,
    first_line,
    open_socket,
    shut,
)
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
#: What a nil counts against the byte cap (its JSON, ``null``): a reply of nils is bounded
#: like any other.
_NIL = 4
#: How deeply a reply's arrays may nest. No allowed command (nor :data:`_TAKE`) answers more
#: than one array deep; the bound keeps a lying server's ``*1 *1 *1 ...`` off the stack.
_MAX_DEPTH = 8

#: The commands that delete what they answer: they run as :data:`_TAKE`.
_TAKES = frozenset({"GETDEL", "LPOP", "RPOP"})
#: GETDEL, LPOP or RPOP, measured before it runs, atomically (a script runs alone on the
#: server): KEYS[1] the key; ARGV[1] the command, ARGV[2] the bytes its reply may take,
#: ARGV[3] LPOP/RPOP's count if given. The measure is the one :class:`_Budget` takes of the
#: reply (a string its length, each element of an array one more), so a reply the script lets
#: through is never refused by the host after the data is gone. Over the cap it answers the
#: error :data:`_OVER` and its measure, and changes nothing. A missing key is not measured
#: (nothing to lose); a count below 1 neither (Redis answers it without popping).
_TAKE = b"""
local key, cmd, cap, count = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local seen
if cmd == 'GETDEL' then
  seen = redis.pcall('STRLEN', key)
elseif not count then
  seen = redis.pcall('LINDEX', key, cmd == 'LPOP' and 0 or -1)
elseif count > 0 then
  seen = redis.pcall('LRANGE', key, cmd == 'LPOP' and 0 or -count,
                     cmd == 'LPOP' and count - 1 or -1)
end
if type(seen) == 'table' and seen.err then return seen end
local size = 0
if type(seen) == 'number' then
  size = seen
elseif type(seen) == 'string' then
  size = #seen
elseif type(seen) == 'table' then
  for _, v in ipairs(seen) do size = size + #v + 1 end
end
if size > cap then return redis.error_reply('OMNICORE_OVER ' .. size) end
if count then return redis.pcall(cmd, key, ARGV[3]) end
return redis.pcall(cmd, key)
"""
_OVER = "OMNICORE_OVER "


class _ReplyError(Exception):
    """An error reply (``-ERR ...``): the server's own text."""


class _Conn:
    __slots__ = ("broken", "file", "killed", "owner", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        self.broken = False
        self.killed = False  # cut at the call's deadline (what failed then, timed out)
        self.owner: str | None = None

    def cut(self) -> None:
        """End the exchange now (the watchdog at the call's deadline): the socket's timeout
        bounds each read, not a server that drips a byte at a time."""
        self.killed = True
        shut(self.sock)

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
        """The next reply, each element counted by ``budget`` before it is read. A refusal
        leaves the rest of the reply unread: the connection is then marked broken."""
        try:
            return self._value(budget, 0)
        except Refused:
            self.broken = True
            raise

    def _value(self, budget: _Budget, depth: int) -> Any:
        line = self.file.readline(_MAX_LINE)
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection lost")
        kind, rest = line[:1], line[1:-2]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                budget.take(_NIL)
                return None
            budget.take(n)
            data = self.file.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("connection lost")
            return data[:-2]
        if kind == b":":
            budget.take(len(rest))
            return int(rest)
        if kind == b"+":
            budget.take(len(rest))
            return rest
        if kind == b"-":
            # An error inside an array leaves the array's other elements unread.
            self.broken = self.broken or depth > 0
            raise _ReplyError(rest.decode("utf-8", "replace"))
        if kind == b"*":
            n = int(rest)
            if n < 0:
                budget.take(_NIL)
                return None
            if depth == _MAX_DEPTH:
                raise ConnectionError(f"the server's reply nests arrays over {_MAX_DEPTH} deep")
            budget.items(n)
            return [self._value(budget, depth + 1) for _ in range(n)]
        raise ConnectionError("the server sent something that is not RESP2")


class _Budget:
    """What is left of a reply's caps, taken as its elements arrive: every element of every
    array (nested ones too) is an item against ``max_rows`` and one byte against
    ``max_result_bytes`` (its separator), taken from the array's header; a string then takes
    its length, an integer its digits, a nil :data:`_NIL`."""

    __slots__ = ("connector", "left", "max_bytes", "max_rows", "rows_left")

    def __init__(self, connector: DbConnector) -> None:
        self.connector = connector.name
        self.max_bytes = self.left = connector.max_result_bytes
        self.max_rows = self.rows_left = connector.max_rows

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise Refused("TOO_LARGE", f"the reply is larger than {self.max_bytes} bytes "
                                       f"(connector {self.connector}, max_result_bytes)")

    def items(self, n: int) -> None:
        self.rows_left -= n
        if self.rows_left < 0:
            raise Refused("TOO_LARGE", f"the reply has more than {self.max_rows} items "
                                       f"(connector {self.connector}, max_rows)")
        self.take(n)


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
        target = connection_target(self.connector, self._read_secret)
        if target.password:
            self.redactor.add(target.password)
        opened: list[socket.socket] = []
        cut: list[bool] = []

        def expire() -> None:  # the whole opening bounded by the deadline, not each read
            cut.append(True)
            for sock in opened:
                shut(sock)

        entry = WATCHDOG.arm(deadline, expire)
        try:
            conn = _Conn(_socket(target, deadline, opened))
        except BaseException:
            Watchdog.disarm(entry)
            if cut:
                raise TimeoutError("the connection did not open in time") from None
            raise
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
            if cut:
                raise TimeoutError("the connection did not open in time") from None
            raise
        finally:
            Watchdog.disarm(entry)
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
        if self.connector.read_only and name not in _READS:
            raise Refused("DENIED", f"connector {self.name} is read-only: {name} writes")
        least, most, keys = COMMANDS[name]
        if len(args) < least or (most is not None and len(args) > most):
            raise Refused("INVALID", f"{name} takes {least}"
                          + ("" if most == least else f" to {most}" if most else " or more")
                          + f" arguments, got {len(args)}")
        # A request costs the host a few times its arguments (encoded, prefixed, framed) and
        # MGET answers one item per key: the arguments are bounded as a reply's items are.
        if len(args) > self.connector.max_rows:
            raise Refused("TOO_LARGE", f"{name} of more than {self.connector.max_rows} "
                                       f"arguments (connector {self.name}, max_rows)")
        raw = [_arg(a, f"args[{i}]") for i, a in enumerate(args)]
        prefix = self.prefix(plugin)
        if keys == "all":
            raw = [prefix + a for a in raw]
        else:
            raw[0] = prefix + raw[0]
        if name == "SET":
            _check_set(raw[2:])
        if name in ("LPOP", "RPOP") and len(raw) == 2:
            count = _int(raw[1], "count")
            if count > self.connector.max_rows:
                raise Refused("TOO_LARGE", f"count is over max_rows ({self.connector.max_rows})")
            # As read here: the script measures what Redis will pop.
            raw[1] = str(count).encode()
        return self._run(plugin, name, raw, deadline)

    def _run(self, plugin: str, name: str, raw: list[bytes], deadline: float) -> Any:
        for attempt in (0, 1):
            try:
                conn, reused = self.pool.acquire(deadline, plugin)
            except Refused:
                raise
            except BaseException as exc:
                raise self._failure(exc) from None
            entry = WATCHDOG.arm(deadline, conn.cut)  # the call's whole exchange, not a read
            try:
                return self._exchange(conn, name, raw, deadline)
            except BaseException as exc:
                if conn.killed:
                    conn.broken = True
                    raise Refused("UNAVAILABLE", f"connector {self.name}: timed out") from None
                # A refusal left the connection as clean as an error reply did, unless the
                # reader marked it (a reply left half read).
                conn.broken = conn.broken or not isinstance(exc, (_ReplyError, Refused))
                # An idle connection that died with a restarted server: once more, afresh.
                if reused and isinstance(exc, (ConnectionError, OSError)) \
                        and not isinstance(exc, TimeoutError):
                    self.pool.discard_idle()  # the others died with it
                    if attempt == 0 and name in _READS:
                        continue
                raise self._failure(exc) from None
            finally:
                Watchdog.disarm(entry)
                self.pool.release(conn)
        raise AssertionError("unreachable")

    def _exchange(self, conn: _Conn, name: str, raw: list[bytes], deadline: float) -> Any:
        budget = _Budget(self.connector)
        max_rows = self.connector.max_rows
        # What could answer with many items is measured first, so it is never read (the
        # measure is the host's, not the plugin's reply: it has its own budget).
        if name == "LRANGE":
            start, stop = _int(raw[1], "start"), _int(raw[2], "stop")
            if start < 0 or stop < 0:
                conn.send([b"LLEN", raw[0]], deadline)
                n = conn.reply(_Budget(self.connector))
                start = max(0, start + n if start < 0 else start)
                stop = stop + n if stop < 0 else stop
            if stop - start + 1 > max_rows:
                raise Refused("TOO_LARGE", f"LRANGE of more than {max_rows} items "
                                           f"(connector {self.name}, max_rows)")
            raw = [raw[0], str(start).encode(), str(stop).encode()]
        elif name in _TAKES:
            return self._take(conn, name, raw, budget, deadline)
        elif name in ("SMEMBERS", "HGETALL"):
            conn.send([b"SCARD" if name == "SMEMBERS" else b"HLEN", raw[0]], deadline)
            n = conn.reply(_Budget(self.connector))
            if isinstance(n, int) and n * (2 if name == "HGETALL" else 1) > max_rows:
                raise Refused("TOO_LARGE", f"{name} of more than {max_rows} items "
                                           f"(connector {self.name}, max_rows)")
        conn.send([name.encode(), *raw], deadline)
        out = conn.reply(budget)
        if name == "HGETALL" and isinstance(out, list):
            return {_field(out[i]): _json(out[i + 1]) for i in range(0, len(out) - 1, 2)}
        return out

    def _take(self, conn: _Conn, name: str, raw: list[bytes], budget: _Budget,
              deadline: float) -> Any:
        conn.send([b"EVAL", _TAKE, b"1", raw[0], name.encode(), str(budget.left).encode(),
                   *raw[1:]], deadline)
        try:
            return conn.reply(budget)
        except _ReplyError as exc:
            if not str(exc).startswith(_OVER):
                raise
            raise Refused("TOO_LARGE", f"{name} would answer {str(exc)[len(_OVER):]} bytes, "
                                       f"more than {budget.max_bytes} (connector {self.name}, "
                                       "max_result_bytes): refused before it ran, the key is "
                                       "unchanged") from None

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
        if not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt, SystemExit: not the plugin's to hear of
        # A failure nothing above names (a bug here): still the plugin's status, never a trap.
        return Refused("UNAVAILABLE", f"connector {self.name}: unexpected failure "
                                      f"({type(exc).__name__}: "
                                      f"{first_line(str(exc), self.redactor)})")

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


def _socket(target: Target, deadline: float, opened: list[socket.socket]) -> socket.socket:
    """The connection's socket, put in ``opened`` as soon as it exists (what the deadline's
    cut shuts down: a TLS handshake that drips is bounded with it)."""
    sock = open_socket(target, deadline, opened)
    if target.tls and not target.socket:
        return ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
    return sock
