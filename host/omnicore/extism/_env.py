"""The host half of ``extism:host/env``: Extism's host functions on omnicore's capabilities.

Each is an ``impl(state, memory, *args)`` for the sandbox's raw host-function path, where
``memory`` is the calling instance's kernel memory (its ``owner`` the instance). Handles are
kernel handles; the key/message handles a function receives are freed, as Extism does.
Failures raise HostTrap with Extism's words: the call fails, the host keeps serving.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from omnicore.capabilities import guestjson
from omnicore.egress import MAX_REQUEST_JSON, Client, Refused, Request
from omnicore.sandbox.fastcall import GuestMemory, HostTrap
from omnicore.sandbox.pluginlog import PluginLog

__all__ = ["ENV_FUNCTIONS", "EnvState", "KernelMemory"]


class KernelOwner(Protocol):
    """What the host functions need of the instance that owns a kernel memory
    (:class:`omnicore.extism._instance.Instance`): its blocks, vars and last HTTP answer.
    A Protocol here, so this module does not import the instance that imports it."""

    vars: dict[str, bytes]
    http_status: int
    http_headers: dict[str, str] | None
    deadline_hit: bool

    def kernel_alloc(self, n: int) -> int: ...
    def kernel_free(self, handle: int) -> None: ...
    def kernel_view(self) -> memoryview: ...
    def kernel_length(self, handle: int) -> int: ...
    def new_block(self, data: bytes) -> int: ...
    def block_bytes(self, handle: int, what: str) -> bytes: ...
    def take_bytes(self, handle: int, what: str) -> bytes: ...
    def take_text(self, handle: int, what: str) -> str: ...


class KernelMemory(GuestMemory):
    """The kernel's memory of one instance, carrying the instance for host functions."""

    __slots__ = ("owner",)

    owner: KernelOwner


@dataclass(frozen=True)
class EnvState:
    """What the host functions of one runtime share: its config, log, var limit and HTTP
    client (None without an ``http`` grant)."""

    config: Mapping[str, Any]
    log: PluginLog
    max_var_bytes: int
    http: Client | None = None


def _text(value: Any) -> bytes:
    return (value if isinstance(value, str)
            else json.dumps(value, separators=(",", ":"))).encode()


def _lookup(mem: KernelMemory, key: int, what: str, get: Callable[[str], bytes | None]) -> int:
    # As Extism: the answer's block is allocated before the key's is freed. Freeing first lets
    # the answer reuse the key's block, and a PDK that frees the key itself afterwards (the
    # Haskell PDK does) would then free the answer and read it as empty.
    inst = mem.owner
    value = get(inst.block_bytes(key, what).decode("utf-8", "replace"))
    handle = 0 if value is None else inst.new_block(value)
    if key:
        inst.kernel_free(key)
    return handle


def config_get(state: EnvState, mem: KernelMemory, key: int) -> int:
    def value(name: str) -> bytes | None:
        found = state.config.get(name)
        return None if found is None else _text(found)

    return _lookup(mem, key, "config key", value)


def var_get(state: EnvState, mem: KernelMemory, key: int) -> int:
    return _lookup(mem, key, "var key", mem.owner.vars.get)


#: What Extism counts for each var beyond its key and value bytes (a Rust String and a
#: Vec<u8>, 24 bytes each), measured against the Extism SDK (tests/extism/test_extism_vars.py).
VAR_OVERHEAD = 48


def var_bytes(key: str, value: bytes) -> int:
    """What one var costs against ``memory.max_var_bytes``, as Extism counts it."""
    return VAR_OVERHEAD + len(key.encode()) + len(value)


def var_set(state: EnvState, mem: KernelMemory, key: int, value: int) -> None:
    inst = mem.owner
    if state.max_var_bytes == 0:
        raise HostTrap("Vars are disabled by this host (memory.max_var_bytes is 0)")
    name = inst.take_text(key, "var key")
    if value == 0:
        inst.vars.pop(name, None)
        return
    data = inst.take_bytes(value, "var value")
    # As Extism: every var stored (the old value of this key too) plus the new one must fit.
    used = sum(var_bytes(k, v) for k, v in inst.vars.items())
    if used + var_bytes(name, data) > state.max_var_bytes:
        raise HostTrap(f"Variable store is full (memory.max_var_bytes: {state.max_var_bytes})")
    inst.vars[name] = data


def _logger(level: int) -> Callable[[EnvState, KernelMemory, int], None]:
    def log(state: EnvState, mem: KernelMemory, msg: int) -> None:
        text = mem.owner.take_bytes(msg, "log message").decode("utf-8", "replace")
        state.log.write(level, text)

    return log


def get_log_level(state: EnvState, mem: KernelMemory) -> int:
    return state.log.min_level


def _http_request(raw: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, url, headers) of Extism's HttpRequest JSON ``{url, method?, headers?}``."""
    try:
        req = guestjson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HostTrap(f"invalid HTTP request JSON: {exc}") from None
    url = req.get("url") if isinstance(req, dict) else None
    if not isinstance(url, str):
        raise HostTrap("invalid HTTP request JSON: it needs a \"url\" string")
    method = req.get("method") or "GET"
    headers = req.get("headers") or {}
    if not isinstance(method, str) or not isinstance(headers, dict) or not all(
            isinstance(v, str) for v in headers.values()):
        raise HostTrap("invalid HTTP request JSON: \"method\" must be a string and "
                       "\"headers\" an object of strings")
    return method, url, headers


def http_request(state: EnvState, mem: KernelMemory, req: int, body: int) -> int:
    # As Extism, the request and body blocks stay the plugin's (PDKs free or reuse them).
    inst = mem.owner
    if inst.kernel_length(req) > MAX_REQUEST_JSON:  # checked before parsing costs the host
        raise HostTrap(f"invalid HTTP request JSON: larger than {MAX_REQUEST_JSON} bytes")
    method, url, headers = _http_request(inst.block_bytes(req, "http request"))
    if state.http is None:
        raise HostTrap(f"HTTP request to {url} is not allowed (no allowed_hosts in the Extism "
                       "manifest, no http grant)")
    data = inst.block_bytes(body, "http request body")
    try:
        resp = state.http.send(Request(method, url, headers=headers, body=data), mem.deadline)
    except Refused as exc:
        if time.monotonic() >= mem.deadline:
            inst.deadline_hit = True  # the call fails as DeadlineExceeded: Extism's "timeout"
            raise HostTrap(f"timeout: HTTP request to {url}: {exc}") from None
        if exc.status == "DENIED":
            raise HostTrap(f"HTTP request to {url} is not allowed: {exc}{_private_hint(exc)}"
                           ) from None
        if exc.status == "TOO_LARGE" and str(exc).startswith("response"):
            raise HostTrap(f"HTTP response exceeds the configured maximum number of bytes: "
                           f"{state.http.policy.max_response_bytes}") from None
        raise HostTrap(f"HTTP request to {url} failed: {exc.status}: {exc}") from None
    inst.http_status, inst.http_headers = resp.status, resp.headers
    return inst.new_block(resp.body)


def _private_hint(exc: Refused) -> str:
    # The one place omnicore refuses what Extism's allowed_hosts allows: say so, in its terms.
    if "resolves to" not in str(exc):
        return ""
    return ("; omnicore differs from Extism here: a private address is reached only when "
            "allowed_hosts names it (the IP, or localhost), see specs/extism.md")


def http_status_code(state: EnvState, mem: KernelMemory) -> int:
    return mem.owner.http_status


def http_headers(state: EnvState, mem: KernelMemory) -> int:
    headers = mem.owner.http_headers
    if headers is None:
        return 0
    return mem.owner.new_block(json.dumps(dict(sorted(headers.items())),
                                          separators=(",", ":")).encode())


Impl = Callable[..., Any]

#: name -> (params, results, impl) for every host function of ``extism:host/env``.
ENV_FUNCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], Impl]] = {
    "config_get": (("i64",), ("i64",), config_get),
    "var_get": (("i64",), ("i64",), var_get),
    "var_set": (("i64", "i64"), (), var_set),
    "log_trace": (("i64",), (), _logger(0)),
    "log_debug": (("i64",), (), _logger(1)),
    "log_info": (("i64",), (), _logger(2)),
    "log_warn": (("i64",), (), _logger(3)),
    "log_error": (("i64",), (), _logger(4)),
    "get_log_level": ((), ("i32",), get_log_level),
    "http_request": (("i64", "i64"), ("i64",), http_request),
    "http_status_code": ((), ("i32",), http_status_code),
    "http_headers": ((), ("i64",), http_headers),
}
