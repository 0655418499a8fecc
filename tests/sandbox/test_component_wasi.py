"""Components' WASI 0.2 under grants (specs/components.md "WASI 0.2"): a plain Python plugin
(tests/sdk/python_wasi, built by componentize-py) opening files with ``open()`` and ``os``
against real directories (the granted ones, a sibling outside them, and symlinks, ``..`` and
absolute paths trying to get there), and dialling a real loopback server, which no grant
opens to ``wasi:sockets``."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import ConfigError, DeadlineExceeded, LimitExceeded
from omnicore.sandbox import PluginModule, SandboxEngine
from omnicore.sandbox.component import ComponentModule, ComponentRuntime
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.wasi_fd import MAX_OPEN
from tests.compiler import BASELINE, ENVIRON
from tests.component_fixtures import python_plugin

pytestmark = pytest.mark.timeout(900)

#: WASI's errno for "not permitted" (wasi-libc's EPERM), and for "no such file".
EPERM, ENOENT = 63, 44
SECRET = "SECRET outside the grant"


@pytest.fixture(scope="module")
def wasm() -> Path:
    return python_plugin("python_wasi")


@pytest.fixture(scope="module")
def engine(module_cache: Path) -> Iterator[SandboxEngine]:
    # An 18 MB component compiles in 8-30 s: once per run, then from this cache.
    with SandboxEngine(cache_dir=module_cache, baseline=BASELINE) as eng:
        yield eng


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rw/ and ro/ to grant, outside/ beside them, and symlinks from ro/ to each."""
    root = tmp_path_factory.mktemp("files")
    for d in ("rw", "ro/sub", "outside"):
        (root / d).mkdir(parents=True)
    (root / "outside" / "secret").write_text(SECRET)
    (root / "ro" / "hello.txt").write_text("hi from ro")
    (root / "rw" / "inside.txt").write_text("inside rw")
    (root / "ro" / "out_abs").symlink_to(root / "outside" / "secret")
    (root / "ro" / "out_rel").symlink_to("../outside/secret")
    (root / "ro" / "out_dir").symlink_to(root / "outside")
    (root / "ro" / "in_rel").symlink_to("hello.txt")
    return root


def _runtime(engine: SandboxEngine, wasm: Path, grants: Any, **limits: Any
             ) -> ComponentRuntime:
    module = PluginModule.load(engine, wasm)
    assert isinstance(module, ComponentModule)
    return ComponentRuntime(engine, module, Limits(**{"max_memory_bytes": 256 << 20,
                                                      "timeout_ms": 5000, **limits}),
                            registry=builtin_registry(), grants=grants)


def _dirs(tree: Path) -> dict[str, Any]:
    return {"fs": {"dirs": [{"path": str(tree / "rw"), "guest": "/rw", "write": True},
                            {"path": str(tree / "ro"), "guest": "/ro"}]}}


@pytest.fixture(scope="module")
def rt(engine: SandboxEngine, wasm: Path, tree: Path) -> Iterator[ComponentRuntime]:
    with _runtime(engine, wasm, _dirs(tree)) as runtime:
        yield runtime


def fs(rt: ComponentRuntime, op: str, **args: Any) -> Any:
    """The plugin's answer: ``{"ok": value}`` or ``{"error": class, "errno": n}``."""
    answer = json.loads(rt.call("fs", json.dumps({"op": op, **args}).encode()))
    assert isinstance(answer, dict)
    return answer


def refused(answer: Any) -> bool:
    return answer == {"error": "PermissionError", "errno": EPERM}


def _snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (symlinks as their target, files as their text)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = (f"-> {os.readlink(p)}" if p.is_symlink() else
                    "dir" if p.is_dir() else p.read_text())
    return out


def test_granted_directories_are_the_components_preopens(rt: ComponentRuntime,
                                                         tree: Path) -> None:
    assert fs(rt, "list", path="/ro") == {"ok": ["hello.txt", "in_rel", "out_abs",
                                                 "out_dir", "out_rel", "sub"]}
    assert fs(rt, "read", path="/ro/hello.txt") == {"ok": "hi from ro"}
    assert fs(rt, "write", path="/rw/made.txt", data="by the plugin") == {"ok": 13}
    assert (tree / "rw" / "made.txt").read_text() == "by the plugin"
    assert fs(rt, "write", path="/rw/made.txt", data="+", mode="a") == {"ok": 1}
    assert fs(rt, "read", path="/rw/made.txt") == {"ok": "by the plugin+"}
    assert fs(rt, "mkdir", path="/rw/d") == {"ok": None}
    assert fs(rt, "rename", path="/rw/made.txt", to="/rw/d/moved.txt") == {"ok": None}
    assert (tree / "rw" / "d" / "moved.txt").read_text() == "by the plugin+"
    assert fs(rt, "remove", path="/rw/d/moved.txt") == {"ok": None}
    assert fs(rt, "rmdir", path="/rw/d") == {"ok": None}
    assert sorted(os.listdir(tree / "rw")) == ["inside.txt"]


def test_inspect_says_where_files_and_sockets_come_from(wasm: Path,
                                                       engine: SandboxEngine) -> None:
    imports = PluginModule.load(engine, wasm).describe()["imports"]
    assert imports["wasi:filesystem/types@0.2.9"] == [
        "supplied: the fs grant's directories (none without it)"]
    assert imports["wasi:filesystem/preopens@0.2.9"] == imports["wasi:filesystem/types@0.2.9"]
    assert imports["wasi:sockets/tcp@0.2.9"] == ["supplied: every address refused"]
    assert imports["wasi:clocks/wall-clock@0.2.9"] == ["supplied"]


def test_without_the_grant_there_is_nothing_to_open(engine: SandboxEngine, wasm: Path,
                                                    tree: Path) -> None:
    with _runtime(engine, wasm, {}) as bare:
        for path in ("/ro/hello.txt", "/rw/inside.txt", str(tree / "ro" / "hello.txt")):
            assert fs(bare, "read", path=path) == {"error": "FileNotFoundError",
                                                   "errno": ENOENT}
        assert fs(bare, "write", path="/rw/x", data="x")["error"] == "FileNotFoundError"
    assert sorted(os.listdir(tree / "rw")) == ["inside.txt"]


@pytest.mark.parametrize("op", [
    {"op": "read", "path": "/ro/../outside/secret"},
    {"op": "read", "path": "/rw/../outside/secret"},
    {"op": "read", "path": "/ro/sub/../../outside/secret"},
    {"op": "list", "path": "/ro/.."},
    {"op": "openat", "dir": "/ro", "path": "../outside/secret"},
    {"op": "openat", "dir": "/ro/sub", "path": "../../outside/secret"},
    {"op": "stat", "path": "/rw/../outside/secret"},
    {"op": "write", "path": "/rw/../outside/secret", "data": "overwritten"},
    {"op": "write", "path": "/rw/../outside/new", "data": "x"},
    {"op": "rename", "path": "/rw/inside.txt", "to": "/rw/../outside/moved"},
    {"op": "link", "path": "/rw/../outside/secret", "to": "/rw/hardlink"},
    {"op": "remove", "path": "/rw/../outside/secret"},
], ids=lambda op: f"{op['op']}:{op['path']}")
def test_dotdot_out_of_a_granted_directory_is_refused(rt: ComponentRuntime, tree: Path,
                                                      op: dict[str, Any]) -> None:
    before = _snapshot(tree)
    assert refused(fs(rt, **op))
    assert _snapshot(tree) == before
    assert fs(rt, "read", path="/ro/hello.txt") == {"ok": "hi from ro"}


@pytest.mark.parametrize("path", ["/etc/passwd", "/outside/secret", "SECRET_ABS"])
def test_an_absolute_host_path_reaches_nothing(rt: ComponentRuntime, tree: Path,
                                               path: str) -> None:
    # wasi-libc resolves an absolute path against the preopens' guest paths; one outside
    # them never reaches the host, whichever way it is opened.
    path = str(tree / "outside" / "secret") if path == "SECRET_ABS" else path
    assert fs(rt, "read", path=path) == {"error": "FileNotFoundError", "errno": ENOENT}
    assert fs(rt, "openat", dir="/ro", path=path) == {"error": "FileNotFoundError",
                                                      "errno": ENOENT}


@pytest.mark.parametrize("op", [
    {"op": "read", "path": "/ro/out_abs"},
    {"op": "read", "path": "/ro/out_rel"},
    {"op": "list", "path": "/ro/out_dir"},
    {"op": "read", "path": "/ro/out_dir/secret"},
    {"op": "stat", "path": "/ro/out_abs"},
    {"op": "openat", "dir": "/ro", "path": "out_rel"},
    {"op": "readlink", "path": "/ro/out_abs"},
    {"op": "write", "path": "/rw/../ro/out_abs", "data": "x"},
], ids=lambda op: f"{op['op']}:{op['path']}")
def test_a_symlink_pointing_out_of_a_granted_directory_is_refused(
        rt: ComponentRuntime, tree: Path, op: dict[str, Any]) -> None:
    assert refused(fs(rt, **op))
    assert (tree / "outside" / "secret").read_text() == SECRET


def test_a_symlink_that_stays_inside_is_followed(rt: ComponentRuntime) -> None:
    # wasmtime's resolution (cap-std) follows it; the core-module functions refuse it.
    assert fs(rt, "read", path="/ro/in_rel") == {"ok": "hi from ro"}


@pytest.mark.parametrize("op", [
    {"op": "write", "path": "/ro/new.txt", "data": "x"},
    {"op": "write", "path": "/ro/hello.txt", "data": "x"},
    {"op": "write", "path": "/ro/hello.txt", "data": "x", "mode": "a"},
    {"op": "write", "path": "/ro/sub/new.txt", "data": "x"},
    {"op": "update", "path": "/ro/hello.txt", "data": "x"},
    {"op": "truncate", "path": "/ro/hello.txt"},
    {"op": "utime", "path": "/ro/hello.txt"},
    {"op": "mkdir", "path": "/ro/d"},
    {"op": "rmdir", "path": "/ro/sub"},
    {"op": "remove", "path": "/ro/hello.txt"},
    {"op": "remove", "path": "/ro/out_abs"},
    {"op": "rename", "path": "/ro/hello.txt", "to": "/ro/renamed.txt"},
    {"op": "rename", "path": "/ro/hello.txt", "to": "/rw/taken.txt"},
    {"op": "rename", "path": "/rw/inside.txt", "to": "/ro/given.txt"},
    {"op": "symlink", "target": "hello.txt", "path": "/ro/link"},
    {"op": "link", "path": "/ro/hello.txt", "to": "/ro/hardlink"},
    {"op": "link", "path": "/ro/hello.txt", "to": "/rw/hardlink"},
], ids=lambda op: f"{op['op']}:{op['path']}")
def test_a_read_only_directory_refuses_every_change(rt: ComponentRuntime, tree: Path,
                                                    op: dict[str, Any]) -> None:
    before = _snapshot(tree)
    assert refused(fs(rt, **op))
    assert _snapshot(tree) == before


@pytest.mark.parametrize("target", ["../outside/secret", "../../etc/passwd", "/etc/passwd",
                                    "SECRET_ABS", "inside.txt", "sub/../inside.txt"])
def test_no_symlink_is_made_in_a_writable_directory(rt: ComponentRuntime, tree: Path,
                                                    target: str) -> None:
    # wasmtime alone makes one whose relative target climbs out (the guest cannot follow
    # it, but whatever on the host walks the directory later could): refused like the rest,
    # as for core modules, and links that stay inside too.
    target = str(tree / "outside" / "secret") if target == "SECRET_ABS" else target
    before = _snapshot(tree)
    assert refused(fs(rt, "symlink", target=target, path="/rw/planted"))
    assert _snapshot(tree) == before
    assert fs(rt, "write", path="/rw/after.txt", data="still writable") == {"ok": 14}
    (tree / "rw" / "after.txt").unlink()


def test_reading_in_a_loop_ends_at_the_deadline(engine: SandboxEngine, wasm: Path,
                                                tree: Path) -> None:
    (tree / "rw" / "big").write_bytes(b"x" * (4 << 20))
    try:
        with _runtime(engine, wasm, _dirs(tree), timeout_ms=500) as short:
            with pytest.raises(DeadlineExceeded):
                fs(short, "readloop", path="/rw/big")
            assert fs(short, "read", path="/ro/hello.txt") == {"ok": "hi from ro"}
    finally:
        (tree / "rw" / "big").unlink()


def _open_under(root: Path) -> int:
    """Descriptors of this process open on ``root`` or beneath it."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        n += target == str(root) or target.startswith(f"{root}/")
    return n


@pytest.mark.parametrize("calls", [
    # One call opening until it is stopped (it would take every descriptor of the
    # process, then spin with them until its deadline): ended by the watch during the call.
    [{"n": 1_000_000, "spin": True}],
    # Calls shorter than an epoch tick, each keeping 30 in the pooled instance: the third
    # ends past the bound when it returns.
    [{"n": 30}, {"n": 30}, {"n": 30}],
], ids=["one-call", "piled-up"])
def test_descriptors_held_in_granted_directories_are_bounded(
        engine: SandboxEngine, wasm: Path, tmp_path: Path, calls: list[dict[str, Any]]
) -> None:
    # A directory of its own: descriptors other runtimes hold elsewhere do not count.
    (tmp_path / "f.txt").write_text("f")
    grants = {"fs": {"dirs": [{"path": str(tmp_path), "guest": "/d"}]}}
    with _runtime(engine, wasm, grants, pool_size=1, timeout_ms=20_000) as one:
        bound = MAX_OPEN + 1  # one instance, and the runtime's own directory
        *fine, last = calls
        for args in fine:
            assert "errno" not in fs(one, "hold", path="/d/f.txt", **args)["ok"]
        with pytest.raises(LimitExceeded) as caught:
            fs(one, "hold", path="/d/f.txt", **last)
        assert caught.value.limit == "open_descriptors"
        assert caught.value.value == bound
        assert f"more than {bound} descriptors" in str(caught.value)
        # The instance was discarded with what it held; the next one works, within the
        # bound as much as it likes.
        assert _open_under(tmp_path) <= 2
        assert fs(one, "read", path="/d/f.txt") == {"ok": "f"}
        assert fs(one, "hold", path="/d/f.txt", n=MAX_OPEN - 8) == {
            "ok": {"held": MAX_OPEN - 8}}
        assert fs(one, "release") == {"ok": 0}
    assert _open_under(tmp_path) == 0


def test_instances_see_the_directory_checked_at_load(engine: SandboxEngine, wasm: Path,
                                                     tmp_path: Path) -> None:
    # Every call a fresh instance (isolation: per-call), each preopening the directory the
    # runtime opened at load: replacing the granted path with a symlink to elsewhere changes
    # nothing for the plugin; the runtime's descriptor is closed with it.
    granted, elsewhere = tmp_path / "granted", tmp_path / "elsewhere"
    granted.mkdir()
    elsewhere.mkdir()
    (granted / "a.txt").write_text("granted")
    (elsewhere / "a.txt").write_text(SECRET)
    grants = {"fs": {"dirs": [{"path": str(granted), "guest": "/g"}]}}
    with _runtime(engine, wasm, grants, isolation="per-call") as per_call:
        assert fs(per_call, "read", path="/g/a.txt") == {"ok": "granted"}
        granted.rename(tmp_path / "moved")
        granted.symlink_to(elsewhere)
        assert fs(per_call, "read", path="/g/a.txt") == {"ok": "granted"}
        assert _open_under(tmp_path / "moved") == 1
    assert _open_under(tmp_path / "moved") == 0


@pytest.mark.parametrize("dirs", [
    [{"path": "MISSING", "guest": "/g"}],
    [{"path": "FILE", "guest": "/g"}],
    [{"path": "LINK", "guest": "/g"}],
    [{"path": "DIR", "guest": "/g/../up"}],
    [{"path": "DIR"}],
    "DIR",
])
def test_a_bad_grant_is_refused_at_load(engine: SandboxEngine, wasm: Path, tmp_path: Path,
                                        dirs: Any) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "dir")

    def real(value: Any) -> Any:
        if isinstance(value, str) and value.isupper():
            return str(tmp_path / value.lower())
        if isinstance(value, list):
            return [real(v) for v in value]
        if isinstance(value, dict):
            return {k: real(v) if k == "path" else v for k, v in value.items()}
        return value

    with pytest.raises(ConfigError, match=r"grant\.fs\.dirs"):
        _runtime(engine, wasm, {"fs": {"dirs": real(dirs)}})


def test_the_grant_comes_from_the_app_config(tmp_path: Path, wasm: Path, tree: Path,
                                             module_cache: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "pywasi.wasm").write_bytes(wasm.read_bytes())
    app = OmniApp("files", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(plugins),
        "sandbox": {"cache_dir": str(module_cache), "watch": False},
        "plugins": {"pywasi": {"grants": {"fs": {"dirs": [
            {"path": str(tree / "ro"), "guest": "/data"}]}},
            "limits": {"max_memory_bytes": 256 << 20, "timeout_ms": 5000}}}},
        environ=ENVIRON, entry_points=False)
    app.start()
    try:
        call = app.plugins.call
        assert json.loads(call("pywasi", "fs", b'{"op": "read", "path": "/data/hello.txt"}')
                          ) == {"ok": "hi from ro"}
        assert refused(json.loads(call("pywasi", "fs",
                                       b'{"op": "write", "path": "/data/x", "data": "x"}')))
    finally:
        app.stop()


@pytest.mark.parametrize("grants", [
    {},
    {"http": {"allow_hosts": ["http://127.0.0.1:*"], "allow_addresses": ["127.0.0.1/32"]}},
], ids=["no-grant", "http-grant"])
def test_sockets_stay_refused_even_with_an_http_grant(engine: SandboxEngine, wasm: Path,
                                                      grants: dict[str, Any]) -> None:
    # wasmtime-py has no per-address hook to apply the egress policy with, so wasi:sockets
    # answers access-denied (CPython's PermissionError) whatever the http grant allows.
    with socket.socket() as srv, _runtime(engine, wasm, grants) as rt:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(0.5)  # a connection made would already be queued: accept at once
        answer = fs(rt, "dial", host="127.0.0.1", port=srv.getsockname()[1])
        assert answer["error"] == "PermissionError", answer
        with pytest.raises(TimeoutError):
            srv.accept()
