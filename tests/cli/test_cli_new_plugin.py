"""The plugin author's path, for every language, as docs/guides/writing-plugins tells it:
`omnicore new plugin` -> `omnicore build --app` into a running `omnicore run` -> `omnicore call`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.toolchains import scaffold_grants

OMNICORE = Path(sys.executable).parent / "omnicore"
LANGS = ["rust", "go", "js", "ts", "c", "zig", "assemblyscript", "kotlin"]
# A free console port, never the scaffold's default 8470: the README's first command (the
# demo) serves there, and its second (this suite) runs beside it. The CLI finds the host it
# starts through the app's console.json, whatever the port.
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMNICORE_LOG__FORMAT": "text",
       "OMNICORE_CONSOLE__PORT": "0"}


def omnicore(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(OMNICORE), *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A running `omnicore run` on a fresh app; yields (app dir, its log file)."""
    work = tmp_path_factory.mktemp("authors")
    assert omnicore("new", "app", cwd=work).returncode == 0
    log_path = work / "run.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([str(OMNICORE), "run", "app"], cwd=work, env=ENV,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            yield work / "app", log_path
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=60)
    assert code == 0, log_path.read_text()


@pytest.mark.parametrize("lang", LANGS)
def test_new_plugin_builds_loads_in_a_running_host_and_answers(
        lang: str, served_app: tuple[Path, Path]) -> None:
    app, log_path = served_app
    work = app.parent
    name = f"hello-{lang}"
    created = omnicore("new", "plugin", name, "--lang", lang, cwd=work)
    assert created.returncode == 0, created.stderr.decode()
    # The operator's grant, next to where the file will land (a plugin cannot grant itself).
    # Kotlin's scaffold also checks a URL over http and counts in kv (scaffold_grants).
    grants = json.dumps(list(scaffold_grants(lang)))
    (app / "plugins" / f"{name}.toml").write_text(f'grants = {grants}\n[config]\n'
                                                   'greeting = "Howdy"\n')
    built = omnicore("build", name, "--app", "app", cwd=work)
    assert built.returncode == 0, built.stdout.decode() + built.stderr.decode()
    assert (app / "plugins" / f"{name}.wasm").is_file()

    deadline = time.monotonic() + 60  # a cold compile of a 3 MB Go module takes seconds
    while f"plugin '{name}'".encode() not in log_path.read_bytes():
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
    assert f"plugin '{name}' 0.1.0 loaded" in log_path.read_text()

    called = omnicore("call", name, "greet", "--app", "app", "--input", '{"name": "Ada"}',
                      "-v", cwd=work)
    assert called.returncode == 0, called.stderr.decode()
    assert json.loads(called.stdout) == {"message": "Howdy, Ada!"}
    # The plugin's own log line of the call (the templates log the name they greet).
    assert b"[info] " in called.stderr and b"Ada" in called.stderr, called.stderr

    # Edit, rebuild, and the running host says it swapped the plugin.
    source = next(p for p in (work / name).rglob("*") if p.suffix in (".rs", ".go", ".js",
                                                                       ".ts", ".c", ".zig",
                                                                       ".kt")
                  and "test" not in p.name)
    assert '"Hello"' in source.read_text()  # the default greeting: a change of the module
    source.write_text(source.read_text().replace('"Hello"', '"Hullo"'))
    assert omnicore("build", name, "--app", "app", cwd=work).returncode == 0
    while f"plugin '{name}' 0.1.0 reloaded".encode() not in log_path.read_bytes():
        assert time.monotonic() < deadline + 60, log_path.read_text()
        time.sleep(0.1)

    refused = omnicore("call", name, "greet", "--app", "app", "--input", '{"name": 7}',
                       cwd=work)
    # Each template words its refusal its own way; all are one typed line naming the handler.
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith(b"Error: ")]
    assert len(errors) == 1, refused.stderr
    assert f"plugin '{name}' handler 'greet' failed: ".encode() in errors[0]
