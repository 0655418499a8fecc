"""The CLI imports what a command uses, and nothing else (issue 25, item 3; issue 34, item 4:
a command that talks to a running host imports no host code).

Each test runs the real ``omnicore`` command in a subprocess and reads the modules that
process ended with (``sys.modules`` at exit), so a timing on a loaded machine decides nothing:
an import that creeps back in fails here whatever the load.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
from click.testing import CliRunner

from omnicore.cli import main
from tests.host_fixtures import config_wasm, write
from tests.hosts import Host

# Runs the command as `omnicore` does, then names every module the process imported.
_PROBE = ("import atexit, sys\n"
          "atexit.register(lambda: sys.stderr.write('MODULES ' + ' '.join(sorted(sys.modules))"
          " + '\\n'))\n"
          "from omnicore.cli import main\n"
          "main(prog_name='omnicore')\n")

#: What neither `--help` nor a call of a plugin that uses only log and config may load.
HEAVY = ("omnicore.storage", "sqlite_utils", "numpy", "hnswlib", "omnicore.extism",
         "omnicore.egress", "urllib3", "starlette", "omnicore.console", "omnicore.workflows",
         "celpy", "omnicore.jobs", "prometheus_client", "omnicore.toolchains", "urllib.request",
         "omnicore.sandbox.component", "watchfiles", "cryptography", "opentelemetry")
#: What `--help` does not need either.
ENGINE = ("wasmtime", "omnicore.sandbox", "omnicore.plugins", "omnicore.config", "pydantic",
          "yaml", "jsonschema", "asyncio")

KV_WAT = r"""
(module
  (@custom "omnicore.manifest" "{\"name\":\"tally\",\"handlers\":[\"incr\"]}")
  (import "omnicore:kv" "incr" (func $incr (param i32 i32 i64 i32) (result i32)))
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 4096))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (i32.and (i32.add (local.get $n)
                                                                    (i32.const 7))
                                                           (i32.const -8))))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  ;; input: the key; output: the new value (i64 LE) at 0
  (func (export "incr") (param $p i32) (param $n i32) (result i64)
    (drop (call $incr (local.get $p) (local.get $n) (i64.const 1) (i32.const 0)))
    (i64.const 8))
)
"""

EVENTS_WAT = r"""
(module
  (import "omnicore:events" "publish" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  (func (export "run") (param i32 i32) (result i64) (i64.const 0))
)
"""


def _modules(args: list[str], env: dict[str, str] | None = None
             ) -> tuple[subprocess.CompletedProcess[bytes], set[str]]:
    result = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                            timeout=120, env={**os.environ, **(env or {})})
    line = next((ln for ln in result.stderr.decode().splitlines()
                 if ln.startswith("MODULES ")), None)
    assert line is not None, result.stderr
    return result, set(line.split()[1:])


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    (folder / "plugins").mkdir(parents=True)
    (folder / "omnicore.yaml").write_text(
        "name: lazy\nplugins_dir: plugins\ndata_dir: .omnicore\n"
        "plugins:\n  conf:\n    grants: [config]\n    config: {who: app}\n"
        "  tally:\n    grants: [kv]\n")
    write(folder / "plugins", "conf.wasm", config_wasm("conf"))
    write(folder / "plugins", "tally.wasm", wasmtime.wat2wasm(KV_WAT))
    return folder


def test_help_imports_neither_the_engine_nor_any_service() -> None:
    result, modules = _modules(["--help"])
    assert result.returncode == 0 and b"inspect" in result.stdout and b"call" in result.stdout
    assert _loaded(modules, HEAVY + ENGINE) == []


@pytest.mark.parametrize("command", [["call", "--help"], ["build", "--help"], ["--version"]])
def test_other_cheap_invocations_import_no_engine(command: list[str]) -> None:
    result, modules = _modules(command)
    assert result.returncode == 0, result.stderr
    assert _loaded(modules, HEAVY + ENGINE) == []


#: An app's plugin settings live in its database too (plugins/operator.py), so a call in an
#: app opens the storage backend whatever the plugin uses; but only a new database file is
#: migrated, the one thing that needs sqlite-utils (and the numpy it imports).
IN_APP = tuple(n for n in HEAVY if n != "omnicore.storage")


def test_call_in_an_app_loads_only_what_the_plugin_uses(app: Path, tmp_path: Path) -> None:
    args = ["call", "conf", "get", "--input", "who", "--app", str(app)]
    env = {"OMNICORE_CACHE_DIR": str(tmp_path / "cache")}
    first, modules = _modules(args, env=env)  # creates and migrates the app's database
    assert first.returncode == 0, first.stderr
    assert "sqlite_utils" in modules
    result, modules = _modules(args, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"app\n"
    assert "wasmtime" in modules and "omnicore.app" in modules  # it did run in the app
    assert _loaded(modules, IN_APP) == []


def test_call_of_a_bare_file_loads_no_service(tmp_path: Path) -> None:
    path = write(tmp_path, "conf.wasm", config_wasm("conf"))
    result, modules = _modules(["call", str(path), "get", "--input", "k", "--grant", "config",
                                "--config", "k=1"],
                               env={"OMNICORE_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"1\n"
    assert _loaded(modules, HEAVY) == []
    # Nor the app config's schema, YAML (no sidecar) or importlib.metadata: 0.15 s together.
    assert _loaded(modules, ("pydantic", "omnicore.config.loader", "omnicore.config.schema",
                             "yaml", "importlib.metadata")) == []
    # Nor the other commands' modules (issue 63: about a fifth of a bare file's call), nor
    # jsonschema for a plugin with no config schema.
    assert sorted(m for m in modules if m.startswith("omnicore.cli.")) == [
        "omnicore.cli.main", "omnicore.cli.plugins"]
    assert _loaded(modules, ("jsonschema", "referencing")) == []


def test_every_command_is_there_when_listed_and_when_named() -> None:
    # Each command's module is imported when the command is looked up (omnicore.cli): help
    # lists them all, and each one named runs its own --help.
    result, _ = _modules(["--help"])
    assert result.returncode == 0, result.stderr
    listed = {ln.split()[0] for ln in result.stdout.decode().split("Commands:")[1].splitlines()
              if ln.strip()}
    assert {"call", "inspect", "run", "new", "plugins", "workflows", "kv", "precompile",
            "exec", "mcp", "events"} <= listed and len(listed) == 27  # `tasks` is hidden
    for name in ("workflows", "plugins", "new", "tasks"):
        got = CliRunner().invoke(main, [name, "--help"])
        assert got.exit_code == 0, got.output
    assert "plugin" in CliRunner().invoke(main, ["new", "--help"]).output
    assert "publish" in CliRunner().invoke(main, ["plugins", "--help"]).output


def test_a_plugin_granted_kv_loads_the_store_on_use_and_keeps_its_data(app: Path) -> None:
    # The other side of laziness: what the plugin uses is there, and works.
    key = app / "key"
    key.write_bytes(b"visits")
    outs = []
    for _ in range(2):
        result, modules = _modules(["call", "tally", "incr", "--input-file", str(key),
                                    "--app", str(app)])
        assert result.returncode == 0, result.stderr
        outs.append(struct.unpack("<q", result.stdout)[0])
        assert "omnicore.storage" in modules
    assert outs == [1, 2]


@pytest.mark.parametrize(("wat", "cap"), [(KV_WAT, "kv"), (EVENTS_WAT, "events")])
def test_a_bare_file_granted_app_state_says_to_pass_app(tmp_path: Path, wat: str,
                                                         cap: str) -> None:
    path = write(tmp_path, "p.wasm", wasmtime.wat2wasm(wat))
    runner = CliRunner()
    env = {"OMNICORE_CACHE_DIR": str(tmp_path / "cache")}
    granted = runner.invoke(main, ["call", str(path), "run", "--grant", cap], env=env)
    assert granted.exit_code == 1
    assert f"is granted {cap}" in granted.stderr and "--app DIR" in granted.stderr
    assert "data_dir" not in granted.stderr  # the Python API's word, not the command's
    # Not granted yet: the needs-grant line already says where it can run.
    ungranted = runner.invoke(main, ["call", str(path), "run"], env=env)
    assert ungranted.exit_code == 1
    assert f"--app DIR --grant {cap}" in ungranted.stderr


def test_a_sidecar_grant_of_app_state_is_refused_the_same_way(tmp_path: Path) -> None:
    path = write(tmp_path, "p.wasm", wasmtime.wat2wasm(KV_WAT))
    (tmp_path / "p.toml").write_text('grants = ["kv"]\n')
    result = CliRunner().invoke(main, ["call", str(path), "incr"],
                                env={"OMNICORE_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 1 and "is granted kv" in result.stderr
    assert "--app DIR" in result.stderr


def test_the_same_bare_file_runs_with_app(app: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "elsewhere.wasm", wasmtime.wat2wasm(KV_WAT))
    key = tmp_path / "key"
    key.write_bytes(b"k")
    result = CliRunner().invoke(main, ["call", str(path), "incr", "--input-file", str(key),
                                       "--grant", "kv", "--app", str(app)])
    assert result.exit_code == 0, result.output
    assert struct.unpack("<q", result.stdout_bytes)[0] == 1


def test_inspect_compiles_and_runs_none_of_the_plugins_code(tmp_path: Path) -> None:
    # Its _initialize never returns: a host loading it fails at its deadline. inspect links
    # it on hollow code (issue 63: a Python component's took 5.6 s on Winch) and answers at
    # once, saying its code did not run; nothing is written to the module cache.
    spin = '(func (export "_initialize") (loop (br 0)))\n  '
    wat = KV_WAT.replace('(func (export "omni_free")', spin + '(func (export "omni_free")')
    path = write(tmp_path, "spin.wasm", wasmtime.wat2wasm(wat))
    cache = tmp_path / "cache"
    env = {"OMNICORE_CACHE_DIR": str(cache)}
    result = CliRunner().invoke(main, ["inspect", str(path), "--grant", "kv"], env=env)
    assert result.exit_code == 0, result.output
    assert "would load  yes  (linked as a host links it; its code does not run here" \
        in result.output
    assert not cache.exists() or not any(cache.iterdir())
    # What only linking finds is still found: WASI's fd_write imported with another type.
    wrong = write(tmp_path, "wrong.wasm", wasmtime.wat2wasm(wat.replace(
        "(memory", '(import "wasi_snapshot_preview1" "fd_write" (func (param i32)))\n  (memory',
        1)))
    result = CliRunner().invoke(main, ["inspect", str(wrong), "--grant", "kv"], env=env)
    assert result.exit_code == 1, result.output
    assert "would load  no: PluginLoadError: plugin 'tally' cannot be linked" in result.output
    assert "fd_write" in result.output


#: What a command that talks to a running host may not load: any of the host's own code
#: below the CLI (config schema, storage, sandbox, plugins, console, the app) or its engines.
HOST = ("omnicore.config", "pydantic", "omnicore.storage", "sqlite_utils", "omnicore.sandbox",
        "wasmtime", "omnicore.plugins", "omnicore.app", "omnicore.core", "starlette",
        "omnicore.console", "omnicore.jobs", "omnicore.capabilities", "asyncio")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real ``omnicore run`` of an app with a ``conf`` plugin, its console on a free port."""
    folder = tmp_path_factory.mktemp("running") / "app"
    (folder / "plugins").mkdir(parents=True)
    (folder / "omnicore.yaml").write_text(
        "name: lazy-host\nplugins_dir: plugins\ndata_dir: state\n"
        "plugins:\n  conf:\n    grants: [config]\n    config: {who: host}\n")
    write(folder / "plugins", "conf.wasm", config_wasm("conf"))
    host = Host(folder, data=folder / "state").start()
    try:
        host.until((folder / "state" / "console.json").is_file, "its console file")
        yield folder
    finally:
        assert host.stop() == 0, host.text


@pytest.mark.parametrize(("args", "out"), [
    (["call", "conf", "get", "--input", "who"], b"host\n"),
    (["logs", "conf"], b""),
])
def test_a_command_to_a_running_host_imports_no_host_code(host: Path, args: list[str],
                                                          out: bytes) -> None:
    # From the app folder (`cd app && omnicore call ...`) and with --app: the same host.
    for extra, cwd in (([], host), (["--app", str(host)], None)):
        result = subprocess.run([sys.executable, "-c", _PROBE, *args, *extra],
                                capture_output=True, timeout=120, cwd=cwd)
        assert result.returncode == 0, result.stderr
        assert result.stdout == out
        line = next(ln for ln in result.stderr.decode().splitlines()
                    if ln.startswith("MODULES "))
        assert _loaded(set(line.split()[1:]), HOST) == []


def test_a_host_in_a_data_dir_from_the_environment_is_found_the_same_way(host: Path,
                                                                        tmp_path: Path
                                                                        ) -> None:
    # OMNICORE_DATA_DIR is a layer of the config too: the quick read honours it.
    (tmp_path / "omnicore.yaml").write_text("name: elsewhere\n")
    result, modules = _modules(["call", "conf", "get", "--input", "who", "--app",
                                str(tmp_path)], env={"OMNICORE_DATA_DIR": str(host / "state")})
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"host\n"
    assert _loaded(modules, HOST) == []


def test_with_no_running_host_the_config_is_still_checked(tmp_path: Path) -> None:
    # The quick read skips the schema only on the way to a running host: without one, a bad
    # key is named as before.
    (tmp_path / "omnicore.yaml").write_text("name: bad\nplugins_dirr: plugins\n")
    for args in (["logs", "conf"], ["call", "conf", "get"]):
        result, _ = _modules([*args, "--app", str(tmp_path)])
        assert result.returncode == 1
        assert b"unknown config key 'plugins_dirr'" in result.stderr


def test_settings_go_through_the_running_host_and_import_no_host_code(host: Path) -> None:
    # One door: with a host running, `omnicore settings` is a client of its REST API, and
    # the host applies the change at once (no wait for the database's change poll).
    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run([sys.executable, "-c", _PROBE, *args, "--app", str(host)],
                                capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr
        line = next(ln for ln in result.stderr.decode().splitlines()
                    if ln.startswith("MODULES "))
        assert _loaded(set(line.split()[1:]), HOST) == [], args
        return result

    def call() -> bytes:
        return run("call", "conf", "get", "--input", "who").stdout

    changed = run("settings", "config", "conf", "who=operator")
    assert b"applied by the running host at http" in changed.stderr
    assert call() == b"operator\n"
    assert json.loads(run("settings", "show", "conf", "--json").stdout) == {
        "config": {"who": "operator"}}
    run("settings", "limits", "conf", "timeout_ms=900")
    run("settings", "limits", "conf", "max_output_bytes=4096")  # over those set before
    assert json.loads(run("settings", "show", "conf", "--json").stdout)["limits"] == {
        "timeout_ms": 900, "max_output_bytes": 4096}
    assert json.loads(run("settings", "clear", "conf", "config", "--json").stdout) == {
        "limits": {"timeout_ms": 900, "max_output_bytes": 4096}}
    assert call() == b"host\n"
    run("settings", "clear", "conf")
    assert json.loads(run("settings", "show", "conf", "--json").stdout) == {}


@pytest.mark.parametrize(("declared", "says"), [
    ('(memory (export "memory") 1025)',
     "declares more initial memory than limits.max_memory_bytes (67108864) allows: oom"),
    ('(memory (export "memory") 2) (table 100001 funcref)',
     "table minimum size of 100001 elements exceeds table limits"),
    ('(memory (export "memory") 2)' + " (table 1 funcref)" * 5,
     "table count too high at 5"),
])
def test_inspect_refuses_what_a_host_refuses_when_it_instantiates(tmp_path: Path, declared: str,
                                                                  says: str) -> None:
    # A memory or table larger than the plugin's limits: a host refuses it instantiating the
    # plugin, before any of its code runs. Hollow code is never instantiated, and inspect said
    # "would load yes"; what it says now is the host's refusal, word for word.
    from omnicore.errors import PluginLoadError
    from omnicore.plugins.host import PluginHost
    from omnicore.sandbox import SandboxEngine

    wat = KV_WAT.replace('(memory (export "memory") 2)', declared)
    path = write(tmp_path, "big.wasm", wasmtime.wat2wasm(wat))
    with SandboxEngine() as engine, PluginHost(engine=engine, data_dir=tmp_path / "d") as host, \
            pytest.raises(PluginLoadError) as refused:
        host.load(path, grants={"kv": {}})
    assert says in str(refused.value)
    result = CliRunner().invoke(main, ["inspect", str(path), "--grant", "kv"])
    assert result.exit_code == 1, result.output
    assert f"would load  no: PluginLoadError: {refused.value}" in result.output
    # At the limits themselves, both load it.
    at = KV_WAT.replace('(memory (export "memory") 2)', '(memory (export "memory") 1024)'
                        ' (table 100000 funcref)' + 3 * " (table 0 funcref)")
    path.write_bytes(wasmtime.wat2wasm(at))
    with SandboxEngine() as engine, PluginHost(engine=engine, data_dir=tmp_path / "d") as host:
        assert host.load(path, grants={"kv": {}}).state == "loaded"
    result = CliRunner().invoke(main, ["inspect", str(path), "--grant", "kv"])
    assert result.exit_code == 0 and "would load  yes" in result.output, result.output
