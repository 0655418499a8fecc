"""Fixtures shared by the whole suite; area-specific ones live in tests/<area>/conftest.py."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.core.lifecycle import State
from omnicore.sandbox import modkey
from tests.compiler import COMPILER, ENVIRON

#: The default deadline of a test's plugins (``sandbox.limits.timeout_ms``): see
#: ``_no_omnicore_env``.
TEST_TIMEOUT_MS = 10_000

# One compiled-module key for every worker, in-process app and host or CLI a test starts,
# so the shared module cache (module_cache) authenticates what any of them compiled. Kept
# beside the cache, never in it (sandbox/modkey.py); a developer's own key wins.
os.environ.setdefault(modkey.ENV_KEY, modkey.from_file(
    Path(__file__).resolve().parents[1] / "build" / "test-module.key").encoded())
# And the CLI's own cache (`omnicore call FILE`, `exec`) is the tree's, not ~/.cache: entries
# another checkout sealed there with its own test key were refused with a warning on the
# stderr that tests of `exec` read (a CI machine made from a developer's).
os.environ["OMNICORE_CACHE_DIR"] = str(Path(__file__).resolve().parents[1] / "build"
                                       / "test-module-cache")

# The wasm fixtures (`wat`, `engine`, `registry`, `make`, `echo`) for every area that runs
# plugins; the browser for every area that drives one; the order a parallel run hands modules
# to its workers (costliest first).
pytest_plugins = ["tests.sandbox_fixtures", "tests.browsers", "tests.schedule"]


@pytest.fixture(autouse=True)
def _no_omnicore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's OMNICORE_* config variables must not change test outcomes.

    Tool settings that share the prefix (OMNICORE_CARGO_TARGET_DIR...) are kept.
    """
    import os

    from omnicore.config import OmniConfig

    for var in list(os.environ):
        rest = var.removeprefix("OMNICORE_")
        if rest != var and ("__" in rest or rest.lower() in OmniConfig.model_fields
                            or rest in ("APPDIR", "DEBUG")):
            monkeypatch.delenv(var)
    # A test's host (and every `omnicore run` it starts) takes a free console port, never
    # the default 8470 that a developer's own host may hold.
    monkeypatch.setenv("OMNICORE_CONSOLE__PORT", "0")
    # And compiles with the tests' compiler (tests/compiler.py: Winch unless asked).
    monkeypatch.setenv("OMNICORE_SANDBOX__COMPILER", COMPILER)
    # And gives its plugins a default deadline of TEST_TIMEOUT_MS, not the product's 1 s: a
    # plugin doing real work (an interpreter's first call, a schedule's summary) ran past 1 s
    # on a loaded CI machine and failed tests that are not about the deadline. A test that is
    # about it sets the plugin's timeout_ms itself.
    monkeypatch.setenv("OMNICORE_SANDBOX__LIMITS__TIMEOUT_MS", str(TEST_TIMEOUT_MS))


@pytest.fixture(autouse=True)
def _plugin_logs_of_earlier_tests_delivered() -> None:
    """Plugin log lines reach Python logging from a thread, after their call: those of an
    earlier test are delivered before this one starts, so its ``caplog`` sees only its own."""
    from omnicore.sandbox.pluginlog import flush

    flush()


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., OmniApp]]:
    """Build OmniApps whose data dir is under tmp_path; any still running are stopped after.

    No entry-point or built-in extensions unless asked (``builtin_extensions=None`` loads the
    built-ins), so core tests do not depend on the sandbox.
    """
    apps: list[OmniApp] = []

    def factory(name: str = "test-app", **kwargs: Any) -> OmniApp:
        overrides = {"data_dir": str(tmp_path / name / "data"),
                     "plugins_dir": str(tmp_path / name / "plugins"),
                     **kwargs.pop("overrides", {})}
        kwargs.setdefault("entry_points", False)
        kwargs.setdefault("builtin_extensions", [])
        environ = kwargs.pop("environ", dict(ENVIRON))
        app = OmniApp(name, overrides=overrides, environ=environ, **kwargs)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        if app.state is State.RUNNING and app._driver.threaded:
            app.stop(grace=0)


@pytest.fixture
def start_host(tmp_path: Path, module_cache: Path) -> Iterator[Callable[..., OmniApp]]:
    """Start hosts in this process, as ``omnicore run`` would make them (the built-in
    extensions, the tests' shared module cache, the catalog polled every 50 ms).

    With ``serving`` (file name -> module), a host has a folder of its own holding them
    (``tmp_path/host<n>``: its ``plugins/``, ``data/`` and ``workflows/``, polled every 50
    ms); without, the hosts share ``tmp_path/plugins`` and, with ``url`` (a PostgreSQL
    database they share), each has a data dir of its own, else they share the SQLite file
    under ``tmp_path/data`` (one after another). ``catalog`` adds to the catalog's settings,
    the other keywords override the config. Every host still running is stopped after the
    test.
    """
    (tmp_path / "plugins").mkdir(exist_ok=True)
    apps: list[OmniApp] = []

    def start(name: str = "test-host", *, url: str | None = None,
              serving: Mapping[str, bytes] | None = None,
              catalog: dict[str, Any] | None = None, **overrides: Any) -> OmniApp:
        own: dict[str, Any] = {}
        if serving is not None:
            home = tmp_path / f"host{len(apps)}"
            folder, data = home / "plugins", home / "data"
            folder.mkdir(parents=True)
            (home / "workflows").mkdir()
            for file, module in serving.items():
                (folder / file).write_bytes(module)
            own["workflows"] = {"dir": str(home / "workflows"), "poll_s": 0.05}
        else:
            data = tmp_path / (f"data{len(apps)}" if url else "data")
            folder = tmp_path / "plugins"
        over = {"data_dir": str(data), "plugins_dir": str(folder),
                "sandbox": {"cache_dir": str(module_cache), "compiler": COMPILER},
                "catalog": {"poll_s": 0.05, **(catalog or {})},
                **({"storage": {"url": url}} if url else {}), **own, **overrides}
        app = OmniApp(name, overrides=over, environ={}, entry_points=False)
        apps.append(app)
        app.start()
        return app

    yield start
    for app in apps:
        if app.state.value == "running":
            app.stop()


def _fail_under_ci(report: pytest.TestReport | pytest.CollectReport, what: str) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    report.outcome = "failed"
    if hasattr(report, "wasxfail"):  # else pytest still counts it as an expected failure
        del report.wasxfail
    report.longrepr = f"{what} under CI (CI=true forbids skips and xfails): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI every toolchain is installed, so a skip can only hide a broken setup, and an
    expected failure hides a known bug: fail both."""
    import os

    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and (report.skipped or hasattr(report, "wasxfail")):
        _fail_under_ci(report, "xfail" if hasattr(report, "wasxfail") else "skipped")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """A module-level skip (``pytest.skip(allow_module_level=True)``) fails under CI too."""
    import os

    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped:
        _fail_under_ci(report, "skipped at collection")


@pytest.fixture(scope="session")
def module_cache() -> Path:
    """One compiled-module cache (``sandbox.cache_dir``) for the engines and apps of the runs
    that load the same plugin bytes: a Ruby plugin compiles in 15-25 s, a Python component in
    5-20 s, a Go one in seconds; from here each loads in milliseconds.

    Sharing cannot hand a test a wrong module: an entry is named by the wasm's sha256 and the
    engine's config key (wasmtime version, fuel, pooling, baseline: all that changes the
    compiled code) and authenticated with the tests' key before use (sandbox/modcache.py). Tests
    about the cache itself (cold compiles, tiers, damaged entries, precompile) keep a fresh
    directory of their own.
    """
    # One folder for every xdist worker, both call paths and later runs (an entry is checked
    # before use, and written by rename: workers sharing it see whole entries or none).
    path = Path(__file__).resolve().parents[1] / "build" / "test-module-cache"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)  # check_cache_dir refuses a directory others can write
    return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """One private PostgreSQL cluster for the session (tests/pgcluster.py); each test that
    needs a database makes its own with ``pg_cluster.database(name)``."""
    from tests.pgcluster import Cluster

    cluster = Cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for this test, owned by a role that is not a superuser;
    dropped after it."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    yield str(pg_cluster.database(name))
    pg_cluster.drop(name)


# --- What a test needs: markers by construction --------------------------------------------
#
# Every test is marked with what it needs beyond Python and the venv (the markers are
# registered in pyproject.toml), so `scripts/dev test --fast` (`-m "not (toolchain or ...)"`)
# runs the rest. Nobody marks a test by hand: a test needs what its own code and its fixtures'
# (all of them, item.fixturenames), and the tests' helpers they call, followed through, reach
# of NEEDS_BY_ROOT, start of NEEDS_BY_PROGRAM, or read of NEEDS_BY_BUILT_PATH. What no code
# shows (a plugin built by an `omnicore build` subprocess) and what is slow is in
# NEEDS_BY_PATH. The check at the end of a run (`needs not marked`) names any test that
# started one of NEEDS_BY_PROGRAM without its marker.

NEEDS = ("toolchain", "postgres", "mysql", "redis", "broker", "browser", "container", "slow")

# Objects (module.qualname; a module name covers all in it) whose use means the need.
NEEDS_BY_ROOT: dict[str, str] = {
    "tests.pgcluster.Cluster": "postgres",
    "tests.dbservers.MariaDB": "mysql",
    "tests.dbservers.Redis": "redis",
    "tests.brokers.Nats": "broker",
    "tests.brokers.Mosquitto": "broker",
    "tests.brokers.RabbitMQ": "broker",
    "playwright": "browser",
    # Building a plugin from source with its language's toolchain (cargo, go, tinygo, zig,
    # asc, componentize-py, node, ruby, clang), or running its unit tests with it.
    "omnicore.toolchains.build": "toolchain",
    "omnicore.toolchains._build": "toolchain",
    "omnicore.toolchains.build_all": "toolchain",
    "omnicore.toolchains.unit_tests": "toolchain",
    "tests.component_fixtures.js_component": "toolchain",
    "tests.component_fixtures.python_plugin": "toolchain",
    "tests.extism.extism_fixtures.pdk_plugin": "toolchain",
    "tests.extism.extism_fixtures.c_plugin": "toolchain",
    "omnicore.toolchains.go._go": "toolchain",  # the go binary, to run it
    "omnicore.toolchains.js.describe": "toolchain",  # node and tsc read the handlers' types
    "omnicore.toolchains.js.statements": "toolchain",  # node checks the statements
    "omnicore.toolchains.js.npm": "toolchain",
}
# Programs: started by a test (the check), or named by its code (a string: "clang",
# "/usr/bin/cargo") where that code starts programs (subprocess...).
NEEDS_BY_PROGRAM = {
    **dict.fromkeys(("initdb", "pg_ctl", "postgres"), "postgres"),
    **dict.fromkeys(("mariadbd", "mysqld", "mariadb-install-db", "mysql_install_db"), "mysql"),
    "redis-server": "redis",
    "nats-server": "broker",
    "mosquitto": "broker",
    **dict.fromkeys(("rabbitmq-server", "epmd"), "broker"),
    # scripts/image (podman, buildah) too
    **dict.fromkeys(("podman", "buildah", "docker", "image"), "container"),
    **dict.fromkeys(("chromium", "chrome", "headless_shell"), "browser"),
    **dict.fromkeys(("cargo", "rustc", "rustdoc", "go", "gofmt", "tinygo", "zig", "clang", "asc",
                     "ruby", "rbwasm", "componentize-py", "componentize_py", "componentize-qjs",
                     "npm", "npx", "tsc", "esbuild", "node"), "toolchain"),
}
# Names that are words in a test's code too (a language, a backend): only started they count.
_NOT_BY_NAME = frozenset(("postgres", "docker", "image", "chrome", "go", "ruby", "node"))
# Per language module (omnicore.toolchains.rust...): these run the toolchain.
_TOOLCHAIN_CALLS = ("compile", "run_tests", "unit_tests")
# A path (a module's constant) into what `scripts/dev setup` and the toolchains build.
_ROOT = Path(__file__).resolve().parents[1]
NEEDS_BY_BUILT_PATH: dict[Path, str] = {
    **{_ROOT / "build" / name: "toolchain"
       for name in ("plugins", "test-plugins", "mcp-conformance-app", "mcp-conformance",
                    "js-tools", "demo")},
    _ROOT / "build" / "containers": "container",
}

# Fixtures parametrized by what they start (tests/storage/conftest.py's backends): the param.
NEEDS_BY_PARAM: dict[tuple[str, str], str] = {("storage", "postgres"): "postgres"}

# Test files (or folders, or FILE::test) whose need no code shows: a plugin built by an
# `omnicore build|dev|test` subprocess or CLI run, a plugin `scripts/dev setup` built into
# build/, an image.
NEEDS_BY_PATH: dict[str, tuple[str, ...]] = {
    # `omnicore new plugin`, then `omnicore build|test|dev` in a subprocess, per language.
    **dict.fromkeys((
        "tests/cli/test_cli_author_loop.py::test_omnicore_test_runs_the_languages_own_tests_"
        "whatever_path_holds",
        "tests/cli/test_cli_author_loop.py::test_omnicore_env_puts_the_build_toolchains_on_path",
        "tests/cli/test_cli_author_loop.py::test_an_unchanged_build_is_up_to_date_and_dot_is_"
        "named",
        "tests/cli/test_cli_author_loop.py::test_a_type_error_fails_a_typescript_build_at_its_"
        "line",
        "tests/cli/test_cli_author_loop.py::test_the_node_test_host",
        "tests/cli/test_cli_dev.py",
        "tests/cli/test_cli_new_plugin.py::test_new_plugin_builds_loads_in_a_running_host_and_"
        "answers",
        "tests/cli/test_cli_traps.py::test_dev_beside_a_running_host_builds_into_it_instead_of_"
        "failing",
        "tests/sdk/test_statements.py::test_omnicore_build_and_test_refuse_a_python_f_string_"
        "statement",
        "tests/sdk/test_statements.py::test_omnicore_test_and_build_pass_a_python_constant_"
        "statement",
        "tests/sdk/test_statements.py::test_the_js_tag_turns_values_into_params_and_omnicore_"
        "test_runs_it",
        "tests/sdk/test_statements.py::test_omnicore_build_and_test_refuse_a_js_template_"
        "statement",
        # The READMEs' commands and the scaffolds' hints: `omnicore build`, `go test`...
        "tests/test_readme_commands.py::test_every_sh_block_of_the_doc_runs",
        "tests/test_readme_commands.py::test_the_scaffold_hints_run",
        # tsc from build/js-tools.
        "tests/sdk/test_js.py::test_typescript_types_check",
        # go found by shutil.which (a word the name check leaves out); a wheel's `omnicore
        # new` and `omnicore build` in a subprocess.
        "tests/sandbox/test_abi_fixtures.py::test_real_go_wasip1_reactor",
        "tests/toolchains/test_build_cache.py::test_omnicore_build_says_a_build_came_from_the_"
        "cache",
        "tests/toolchains/test_wheel_install.py::test_new_build_and_call_from_a_wheel_outside_"
        "the_checkout",
    ), ("toolchain",)),
    # Five seconds and more in a --fast run on a loaded 2-core machine (--durations=0): a
    # churn or a fuzz loop, many `omnicore` or pytest processes, a wait for a real downtime.
    **dict.fromkeys((
        "tests/plugins/test_locks.py::test_churn_beside_the_watcher_never_crashes",
        "tests/sandbox/test_smith.py::test_random_modules_never_hurt_the_host",
        "tests/sandbox/test_gil_hold.py::test_a_short_export_turning_long_lets_other_threads_"
        "run",
        "tests/subscriptions/test_service.py::test_a_slow_subscriber_never_slows_the_publisher_"
        "and_overflow_is_counted",
        "tests/capabilities/test_tasks.py::test_catch_up_none_and_one_after_real_downtime",
        "tests/jobs/test_shutdown.py::test_sigterm_ends_within_the_grace_and_the_jobs_run_again_"
        "after_restart",
        "tests/mcp/test_tasks_kill.py::test_sqlite_the_restarted_host_finishes_the_task",
        "tests/console/test_audit.py::test_cli_changes_are_recorded_with_origin_cli",
        "tests/console/test_disk_full.py",
        "tests/console/test_web_packaging.py::test_the_wheel_carries_the_front_end_and_the_"
        "console_uses_it",
        "tests/cli/test_cli_hostile.py::test_concurrent_calls_of_a_wasi_plugin_never_abort_at_"
        "exit",
        "tests/cli/test_cli_users.py::test_users_written_by_the_cli_sign_in_to_the_apps_console",
        "tests/cli/test_cli_faults.py::test_a_second_host_is_refused_naming_the_first_and_"
        "touches_nothing_of_it",
        "tests/cli/test_cli_settings.py::test_the_grant_hint_after_a_revoke_restores_the_grant_"
        "with_its_options",
        "tests/core/test_seed.py::test_seed_app_example",
        "tests/deploy/test_deploy_files.py::test_the_image_entrypoint_serves_healthz_with_the_"
        "images_environment",
        "tests/test_ci_guard.py",
        "tests/test_markers.py",
        "tests/test_docs.py::test_the_site_builds_strictly",
        "tests/cli/test_cli_faults.py::test_a_killed_hosts_job_runs_again_within_a_second_of_"
        "the_restart",
        "tests/storage/test_boundary.py::test_no_code_outside_storage_writes_sql_or_reaches_a_"
        "backend",
        "tests/capabilities/test_secrets.py::test_cli_set_list_delete_rotate",
        "tests/capabilities/test_tasks.py::test_a_job_survives_kill_9_of_the_host_and_completes_"
        "after_restart",
        "tests/plugins/test_cold_start.py::test_healthz_and_the_api_answer_while_plugins_"
        "compile",
    ), ("slow",)),
}


def _qualname(obj: object) -> str | None:
    import types

    if isinstance(obj, types.ModuleType):
        return obj.__name__
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qual}" if isinstance(module, str) and isinstance(qual, str) else None


@functools.cache
def _root_need(name: str) -> str | None:
    for root, need in NEEDS_BY_ROOT.items():
        if name == root or name.startswith(root + "."):
            return need
    module, _, attr = name.rpartition(".")
    if module.startswith("omnicore.toolchains.") and attr in _TOOLCHAIN_CALLS:
        return "toolchain"
    return None


def _names_in(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names_in(const)
    return names


# What starts a program (subprocess.run, Popen, asyncio.create_subprocess_exec, shutil.which).
_STARTS = frozenset(("subprocess", "run", "Popen", "check_call", "check_output",
                     "create_subprocess_exec", "which"))


def _programs_in(code: Any) -> set[str]:
    """The needs of the programs a code object names in its strings and starts."""
    found = set()
    starts = not _STARTS.isdisjoint(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_consts"):
            found |= _programs_in(const)
        elif starts and isinstance(const, str) and len(const) < 200:
            name = const.rpartition("/")[2]
            if name in NEEDS_BY_PROGRAM and name not in _NOT_BY_NAME:
                found.add(NEEDS_BY_PROGRAM[name])
    return found


_needs_cache: dict[int, frozenset[str]] = {}


def _needs_of(obj: object) -> frozenset[str]:
    """What a function (or a class's methods) needs, following the tests' own helpers."""
    import inspect
    import sys

    key = id(obj)
    if key in _needs_cache:
        return _needs_cache[key]
    _needs_cache[key] = frozenset()  # a cycle adds nothing
    found: set[str] = set()
    if inspect.isclass(obj):
        for member in vars(obj).values():
            member = getattr(member, "__func__", member)  # classmethod, staticmethod
            if inspect.isfunction(member):
                found |= _needs_of(member)
    else:
        func = inspect.unwrap(obj)  # type: ignore[arg-type]
        code = getattr(func, "__code__", None)
        names = _names_in(code) if code is not None else set()
        if code is not None:
            found |= _programs_in(code)
        scope = getattr(func, "__globals__", {})
        for name in names:
            target = scope.get(name, sys.modules.get(name))
            if target is None and "." in name:  # `from a.b import c` inside the function
                target = name
            if isinstance(target, Path):
                found |= {need for path, need in NEEDS_BY_BUILT_PATH.items()
                          if target.is_relative_to(path)}
                continue
            qual = target if isinstance(target, str) else _qualname(target)
            if qual is None:
                continue
            quals, targets = [qual], [target]
            if isinstance(target, str) or inspect.ismodule(target):
                # `module.attr`, `module.submodule.attr`, and `from module import attr`
                # inside the function: attr is among the same names.
                modules = [(qual, sys.modules.get(qual) if isinstance(target, str) else target)]
                for _ in range(2):
                    deeper = []
                    for prefix, module in modules:
                        for n in names:
                            attr = getattr(module, n, None)
                            quals.append(_qualname(attr) or f"{prefix}.{n}")
                            targets.append(attr)
                            if inspect.ismodule(attr):
                                deeper.append((attr.__name__, attr))
                    modules = deeper
            found |= {need for q in quals if (need := _root_need(q))}
            for each in targets:
                if ((inspect.isfunction(each) or inspect.isclass(each))
                        and each.__module__.split(".")[0] == "tests"):
                    found |= _needs_of(each)
    _needs_cache[key] = frozenset(found)
    return _needs_cache[key]


def _needs_of_item(item: pytest.Item) -> set[str]:
    needs: set[str] = set()
    function = getattr(item, "function", None)
    if function is not None:
        needs |= _needs_of(function)
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(item, "fixturenames", ()):
        for fixturedef in (info.name2fixturedefs.get(name, ()) if info else ()):
            needs |= _needs_of(fixturedef.func)
    callspec = getattr(item, "callspec", None)
    for (name, value), need in NEEDS_BY_PARAM.items():
        if callspec is not None and callspec.params.get(name) == value:
            needs.add(need)
    nodeid = item.nodeid
    for path, path_needs in NEEDS_BY_PATH.items():
        if nodeid == path or nodeid.startswith((path + "::", path + "/", path + "[")):
            needs.update(path_needs)
    return needs


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests.callpath_contract import in_contract

    for item in items:
        marked = {m.name for m in item.iter_markers() if m.name in NEEDS}
        for need in sorted(_needs_of_item(item) - marked):
            item.add_marker(need)
        # The call-path contract (tests/callpath_contract.py, specs/callpath-contract.md):
        # what `scripts/dev test` runs a second time, on the Python call path (-m callpath).
        if in_contract(item.nodeid):
            item.add_marker("callpath")


# The check: the programs a test starts (an audit hook on subprocess.Popen, which asyncio's
# subprocesses and Playwright's driver go through too) say what it needed.

# Arguments that only ask a toolchain what it is (the `check()` of a language).
_PROBES = ("--version", "-v", "version", "env", "--print")


def _need_of_program(args: Any) -> str | None:
    """What starting ``args`` (an argv or a command line) needs, if any."""
    argv = [args] if isinstance(args, (str, bytes, Path)) else list(args or ())
    argv = [a.decode() if isinstance(a, bytes) else str(a) for a in argv]
    if not argv:
        return None
    if len(argv) == 1 and " " in argv[0]:  # a shell command line
        argv = argv[0].split()
    name, rest = Path(argv[0]).name, argv[1:]
    if name in ("bash", "sh") and "-c" in rest[:-1]:  # each command of the script
        import re

        commands = re.split(r"[;&|\n]+", rest[rest.index("-c") + 1])
        needs = {_need_of_program(words) for c in commands if (words := c.split())}
        return min((n for n in needs if n), default=None)
    if name in ("bash", "sh") and rest:  # a script file: scripts/image...
        name, rest = Path(rest[0]).name, rest[1:]
    if name.startswith("python") and "-m" in rest:
        at = rest.index("-m") + 1
        name, rest = (rest[at], rest[at + 1:]) if at < len(rest) else (name, [])
    if name in ("omnicore", "omnicore.cli"):
        return "toolchain" if rest[:1] in (["build"], ["dev"], ["test"]) else None
    if name == "node" and any("playwright" in a for a in rest):
        return "browser"
    if rest[:1] and rest[0] in _PROBES:
        return None
    return NEEDS_BY_PROGRAM.get(name)


class _NeedsCheck:
    """Names, at the end of a run, the tests that started what their markers do not say."""

    def __init__(self) -> None:
        self.used: set[str] | None = None
        self.unmarked: list[str] = []

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "subprocess.Popen" and self.used is not None:
            try:
                need = _need_of_program(args[1] if args[1] is not None else args[0])
            except Exception:  # never break the program being started
                need = None
            if need:
                self.used.add(need)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        self.used = set()
        try:
            yield
        finally:
            self.used = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Iterator[None]:
        outcome = yield
        if call.when == "teardown" and self.used:
            marked = {m.name for m in item.iter_markers() if m.name in NEEDS}
            missing = sorted(self.used - marked)
            if missing:  # on the report, so an xdist worker's reach the terminal
                outcome.get_result().user_properties.append(("needs_unmarked", missing))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, value in report.user_properties:
            if key == "needs_unmarked":
                self.unmarked.append(f"{report.nodeid}: {', '.join(value)}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.unmarked:
            terminalreporter.section("needs not marked")
            terminalreporter.line("These tests started what their markers do not say (add "
                                  "its fixture or helper to tests/conftest.py's NEEDS_BY_*):")
            for line in self.unmarked:
                terminalreporter.line(f"  {line}")


# The checks of the pytest sessions running in this process (pytester nests one): an audit
# hook cannot be removed, so one hook, added once, serves them all.
_needs_checks: list[_NeedsCheck] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    for check in _needs_checks:
        check.audit(event, args)


def pytest_configure(config: pytest.Config) -> None:
    import sys

    global _audit_added
    if not _audit_added:
        sys.addaudithook(_audit)
        _audit_added = True
    check = _NeedsCheck()
    _needs_checks.append(check)
    config.pluginmanager.register(check, "omnicore-needs-check")


def pytest_unconfigure(config: pytest.Config) -> None:
    check = config.pluginmanager.get_plugin("omnicore-needs-check")
    if check in _needs_checks:
        _needs_checks.remove(check)


_audit_added = False
