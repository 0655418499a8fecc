"""The plugin author's loop: `omnicore test`, `omnicore env`, build feedback, TypeScript
checks and stack traces, the Node test host, and what the host prints while one works."""

from __future__ import annotations

import io
import logging
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from omnicore.errors import GuestError
from omnicore.logging import configure
from omnicore.plugins.host import PluginHost
from omnicore.toolchains import build

VENV_BIN = Path(sys.executable).parent
OMNICORE = VENV_BIN / "omnicore"
LANGS = ["rust", "go", "js", "ts", "c"]
# What breaks each scaffold's own test: the comma of the message its handler builds.
BREAK = {"rust": ("src/lib.rs", '"{}, {}!"', '"{} {}!"'), "go": ("main.go", '", "', '" "'),
         "js": ("plugin.js", "}, $", "} $"), "ts": ("plugin.ts", "}, $", "} $"),
         "c": ("plugin.c", '"%s, %s!"', '"%s %s!"')}


def drifted_env(tmp: Path) -> dict[str, str]:
    """PATH as an author's machine may have it: no venv, and a `cargo`/`go` that fail first
    (rustup's cargo cannot drive Debian's rustc; Go is only in the venv)."""
    fake = tmp / "drift"
    fake.mkdir()
    for tool in ("cargo", "go", "rustc"):
        script = fake / tool
        script.write_text("#!/bin/sh\necho \"error: unknown print request 'split-debuginfo'\" >&2"
                          "\nexit 101\n")
        script.chmod(0o755)
    path = [p for p in os.environ["PATH"].split(os.pathsep)
            if p and Path(p).resolve() != VENV_BIN.resolve()]
    return {**os.environ, "PATH": os.pathsep.join([str(fake), *path])}


def omnicore(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OMNICORE), *map(str, args)], cwd=cwd, env=env or dict(os.environ),
                          capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("lang", LANGS)
def test_omnicore_test_runs_the_languages_own_tests_whatever_path_holds(
        lang: str, tmp_path: Path) -> None:
    env = drifted_env(tmp_path)
    assert omnicore("new", "plugin", "hello", "--lang", lang, cwd=tmp_path).returncode == 0
    passed = omnicore("test", "hello", cwd=tmp_path, env=env)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "split-debuginfo" not in passed.stderr
    file, old, new = BREAK[lang]
    source = tmp_path / "hello" / file
    assert old in source.read_text()
    source.write_text(source.read_text().replace(old, new))
    failed = omnicore("test", "hello", cwd=tmp_path, env=env)
    assert failed.returncode != 0, failed.stdout


def test_omnicore_env_puts_the_build_toolchains_on_path(tmp_path: Path) -> None:
    env = drifted_env(tmp_path)
    assert omnicore("new", "plugin", "hello", "--lang", "go", cwd=tmp_path).returncode == 0
    script = (f'eval "$({OMNICORE} env --bin-dir {tmp_path / "bin"})"\n'
              "go version\ncargo --version\ncd hello && GOOS=wasip1 GOARCH=wasm go test .\n")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("go version go1.")
    assert "cargo 1." in done.stdout and "ok  \texample.com/hello" in done.stdout


def test_an_unchanged_build_is_up_to_date_and_dot_is_named(tmp_path: Path) -> None:
    assert omnicore("new", "plugin", "hello", "--lang", "c", cwd=tmp_path).returncode == 0
    project = tmp_path / "hello"
    first = omnicore("build", ".", cwd=project)
    assert first.returncode == 0, first.stderr
    assert "[1/1] hello: ok c," in first.stdout and "-> build/plugins/hello.wasm" in first.stdout
    second = omnicore("build", ".", cwd=project)
    assert "[1/1] hello: up to date (build/plugins/hello.wasm)" in second.stdout
    assert second.stdout.endswith("\n") and "[1/1] .:" not in second.stdout


def test_a_type_error_fails_a_typescript_build_at_its_line(tmp_path: Path) -> None:
    assert omnicore("new", "plugin", "hello", "--lang", "ts", cwd=tmp_path).returncode == 0
    source = tmp_path / "hello" / "plugin.ts"
    lines = source.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "export function greet" in line) + 2
    lines.insert(at - 1, '  const wrong: number = "s";')
    source.write_text("\n".join(lines) + "\n")
    done = omnicore("build", "hello", cwd=tmp_path)
    assert done.returncode == 1
    assert f"plugin.ts:{at}:9: error TS2322" in done.stderr, done.stderr


_THROWING_TS = """import { log } from "omnicore";

interface Problem { code: string }

function check(text: string): number {
  if (text.length > 3) {
    throw new Error("too long");
  }
  return text.length;
}

export function measure(input: string): string {
  log.info("measuring");
  return String(check(input));
}

export function refuse(_input: string): string {
  const problem: Problem = { code: "E_BAD" };
  throw problem;
}
"""


def test_typescript_stack_frames_and_thrown_objects_reach_the_caller(tmp_path: Path) -> None:
    src = tmp_path / "thrower.ts"
    src.write_text(_THROWING_TS)
    wasm = build(src, tmp_path / "out")
    with PluginHost() as host:
        name = host.load(wasm).name
        assert host.call(name, "measure", b"abc") == b"3"
        with pytest.raises(GuestError) as stack:
            host.call(name, "measure", b"abcdef")
        with pytest.raises(GuestError) as thrown:
            host.call(name, "refuse", b"")
    assert "at check (thrower.ts:7)" in str(stack.value)
    assert "at measure (thrower.ts:14)" in str(stack.value)
    assert str(thrown.value).endswith('failed: {"code":"E_BAD"}')


_HOST_TEST = """import assert from "node:assert/strict";
import { test } from "node:test";
import { TestHost, useTestHost, call, callJSON } from "omnicore/testing";
import { bytes, config, events, http, kv, secrets, tasks, OmniHostError } from "omnicore";

test("the in-memory host answers every namespace as the real one", async () => {
  const host = useTestHost(new TestHost({
    config: { db: { port: 5432 }, name: "x" }, kv: { n: "41" }, secrets: { token: "s3" },
    handlers: ["later"],
    http: (req) => ({ status: 201, headers: { "x-a": "1" }, body: `${req.method} ${req.url}` }),
  }));
  assert.equal(config.get("db.port"), "5432");
  assert.equal(config.value("db.port"), 5432);
  assert.equal(config.get("nope", "fallback"), "fallback");
  assert.equal(kv.incr("n"), 42);
  kv.set("j", { a: 1 });
  assert.deepEqual(kv.getJSON("j"), { a: 1 });
  assert.deepEqual(kv.list(""), ["j", "n"]);
  assert.equal(secrets.getText("token"), "s3");
  assert.throws(() => secrets.get("other"), (e) => e instanceof OmniHostError
    && e.code === "DENIED");
  const res = http.get("https://example.com/x");
  assert.equal(res.status, 201);
  assert.equal(res.text(), "GET https://example.com/x");
  events.publish("done", { ok: true });
  assert.equal(host.events[0].topic, "done");
  assert.equal(tasks.enqueue("later", "p"), 1);
  assert.equal(host.tasks[0].handler, "later");
  const echoed = await call(() => bytes(), "raw");
  assert.equal(new TextDecoder().decode(echoed), "raw");
  assert.equal(await callJSON(() => undefined), undefined);
});

test("a failing assertion names this file's line", () => {
  useTestHost(new TestHost());
  assert.equal(config.get("missing", "a"), "b");
});
"""


def test_the_node_test_host(tmp_path: Path) -> None:
    assert omnicore("new", "plugin", "hello", "--lang", "ts", cwd=tmp_path).returncode == 0
    (tmp_path / "hello" / "host.test.ts").write_text(_HOST_TEST)
    done = omnicore("test", "hello", cwd=tmp_path)
    assert done.returncode == 1
    assert "# pass 3" in done.stdout and "# fail 1" in done.stdout, done.stdout
    failing = _HOST_TEST.splitlines().index('  assert.equal(config.get("missing", "a"), "b");')
    assert f"host.test.ts:{failing + 1}:" in done.stdout, done.stdout


def test_a_reload_logs_reloaded(tmp_path: Path) -> None:
    assert omnicore("new", "plugin", "hello", "--lang", "c", cwd=tmp_path).returncode == 0
    wasm = build(tmp_path / "hello", tmp_path / "out")
    (tmp_path / "out" / "hello.toml").write_text('grants = ["config"]\n')
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("omnicore.plugins.host")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with PluginHost() as host:
            name = host.load_file(wasm)
            source = tmp_path / "hello" / "plugin.c"
            source.write_text(source.read_text().replace('"Hello"', '"Hi"'))
            build(tmp_path / "hello", tmp_path / "out")
            host.reload_file(name, wasm)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert any(m.startswith("plugin 'hello' 0.1.0 loaded") for m in records), records
    assert any(m.startswith("plugin 'hello' 0.1.0 reloaded") for m in records), records


def _log_one(stream: io.TextIOBase, source: str) -> None:
    configure("info", "json", stream, source=source)  # type: ignore[arg-type]
    try:
        logging.getLogger("omnicore.test").info("hello")
    finally:
        configure("info", "text", io.StringIO())
    stream.flush()


def test_json_nobody_chose_becomes_text_on_a_terminal() -> None:
    main, follower = pty.openpty()
    try:
        tty = os.fdopen(follower, "w", closefd=False)
        for source, expect_json in (("adapter container", False), ("default", False),
                                    ("env OMNICORE_LOG__FORMAT", True)):
            _log_one(tty, source)
            line = os.read(main, 4096).decode()
            assert line.lstrip().startswith("{") is expect_json, (source, line)
        piped = io.StringIO()
        piped.isatty = lambda: False  # type: ignore[method-assign]
        configure("info", "json", piped, source="adapter container")
        logging.getLogger("omnicore.test").info("hello")
        configure("info", "text", io.StringIO())
        assert piped.getvalue().startswith("{")
    finally:
        os.close(main)
        os.close(follower)


def test_the_debug_hint_names_a_command_that_works(tmp_path: Path) -> None:
    src = tmp_path / "thrower.ts"
    src.write_text(_THROWING_TS)
    wasm = build(src, tmp_path / "out")
    short = omnicore("call", wasm, "measure", "--input", "abcdef", cwd=tmp_path)
    assert short.returncode == 1
    assert short.stderr.rstrip().endswith("(omnicore --debug call ... for the rest)")
    full = omnicore("--debug", "call", wasm, "measure", "--input", "abcdef", cwd=tmp_path)
    assert "at check (thrower.ts:7)" in full.stderr
