"""Ruby plugins (sdk/ruby, toolchains/ruby/): the real interpreter from npm, a project
scaffolded, tested in that interpreter, built and called by a real host; the SDK's host
functions (log, config, kv) and the fs grant's directories under grants; every capability on
omnicore's test host; the build's refusals (no handler, a Ruby error, a gem with a
C extension) in Ruby's own words.

The runtime is built once by the set-up (build/ruby/); a test run compiles each distinct
plugin module once more in the host (the interpreter is 12 MB of code), so the tests share
one scaffolded plugin and one compile cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from omnicore.app import OmniApp
from omnicore.errors import BuildError, GuestError
from omnicore.toolchains import build, locations, ruby, scaffold, unit_tests
from omnicore.toolchains.ruby import glue, source
from tests.compiler import ENVIRON

pytestmark = pytest.mark.timeout(900)



@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ruby-cache")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scaffolded project, given a kv handler beside its greeter."""
    dest = tmp_path_factory.mktemp("ruby") / "hello"
    scaffold(dest, "hello", "ruby")
    with (dest / "plugin.rb").open("a") as f:
        f.write('\nOmnicore.handler :visits do |input|\n'
                '  Omnicore::KV.set("last", input)\n'
                '  "#{Omnicore::KV.incr("visits")} #{Omnicore::KV.get("last")} '
                '#{Omnicore::KV.list.inspect} #{Omnicore::KV.get("missing").inspect}"\n'
                'end\n'
                # fs: Ruby's own File and Dir on the grant's directories; a stdlib file
                # required at call time still comes from the interpreter's image.
                'Omnicore.json_handler :files do |req|\n'
                '  require "shellwords"\n'
                '  File.write(req["write"], req["text"]) if req["write"]\n'
                '  { "read" => File.read(req["read"]), "listed" => Dir.children("/out").sort,\n'
                '    "words" => Shellwords.split("a \'b c\'") }\n'
                'rescue SystemCallError => e\n'
                '  { "error" => e.class.name }\n'
                'end\n'
                # mcp outside an MCP call: nobody listens
                'Omnicore.handler :tool do\n'
                '  sent = Omnicore::MCP.progress(1, 2, "half way")\n'
                '  Omnicore::MCP.ask("roots/list")\n'
                'rescue Omnicore::Unavailable\n'
                '  "#{sent} unavailable"\n'
                'end\n')
    return dest


def test_a_scaffolded_project_tests_builds_and_answers_a_real_host(
        project: Path, tmp_path: Path, cache: Path) -> None:
    tests = unit_tests(project)
    done = subprocess.run(tests.argv, cwd=tests.cwd, env=tests.env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed, 0 failed" in done.stdout

    wasm = build(project, tmp_path / "plugins")
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "a.txt").write_text("granted")
    (tmp_path / "secret.txt").write_text("not granted")
    app = OmniApp("rb", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "sandbox": {"cache_dir": str(cache), "watch": False},
        "plugins": {"hello": {"grants": {"config": {}, "kv": {}, "mcp": {"ask": ["roots"]},
                                         "fs": {"dirs": [
            {"path": str(tmp_path / "in"), "guest": "/in"},
            {"path": str(tmp_path / "out"), "guest": "/out", "write": True}]}},
            "config": {"greeting": "Hej"}}}},
        environ=ENVIRON, entry_points=False)
    app.start()
    try:
        assert wasm.name == "hello.wasm"
        assert app.plugins.call_json("hello", "greet", {"name": "Ada"}) == {"message": "Hej, Ada!"}
        assert app.plugins.call("hello", "visits", b"x\x00y") == \
            b'1 x\x00y ["last", "visits"] nil'
        assert app.plugins.call("hello", "visits", b"z").startswith(b"2 z ")
        with pytest.raises(GuestError, match="name must be a string"):
            app.plugins.call("hello", "greet", b'{"name": 5}')
        with pytest.raises(GuestError, match="invalid JSON input"):
            app.plugins.call("hello", "greet", b"{")
        logs = [line.message for line in app.plugins.logs("hello").lines()]
        assert "saying Hej to Ada" in logs
        files = {"read": "/in/a.txt", "write": "/out/b.txt", "text": "written"}
        assert app.plugins.call_json("hello", "files", files) == {
            "read": "granted", "listed": ["b.txt"], "words": ["a", "b c"]}
        assert (tmp_path / "out" / "b.txt").read_text() == "written"
        # Outside the grant, a read-only directory, and the build's own folder are refused.
        for refused, error in [({"read": "/in/../secret.txt"}, "Errno::ENOTCAPABLE"),
                               ({"read": "/etc/passwd"}, "Errno::ENOENT"),
                               ({"read": "/omnicore/plugin/plugin.rb"}, "Errno::ENOENT"),
                               ({"read": "/in/a.txt", "write": "/in/c.txt", "text": "x"},
                                "Errno::EROFS")]:
            assert app.plugins.call_json("hello", "files", refused) == {"error": error}
        assert not (tmp_path / "in" / "c.txt").exists()
        assert app.plugins.call("hello", "tool", b"") == b"false unavailable"
    finally:
        app.stop()


def test_a_failing_test_fails_omnicore_test_with_its_line(project: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    scaffold(broken, "broken", "ruby")
    test = broken / "test" / "plugin_test.rb"
    test.write_text(test.read_text().replace('"Hi, Ada!"', '"Hello, Ada!"'))
    tests = unit_tests(broken)
    done = subprocess.run(tests.argv, cwd=tests.cwd, env=tests.env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1
    assert "1 passed, 1 failed" in done.stdout
    assert "test/plugin_test.rb:5" in done.stdout


def test_the_test_host_serves_every_capability() -> None:
    # tests/sdk/ruby_testhost: handlers using tasks, events, http, secrets, memory, vectors,
    # sql, redis and mcp, and the unit tests that call them on omnicore's test host through
    # Omnicore::TestHost.
    tests = unit_tests(Path(__file__).parent / "ruby_testhost")
    done = subprocess.run(tests.argv, cwd=tests.cwd, env=tests.env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7 passed, 0 failed" in done.stdout


def test_the_build_refuses_with_rubys_own_message(tmp_path: Path) -> None:
    (tmp_path / "plugin.rb").write_text('require "omnicore"\nputs "no handler here"\n')
    with pytest.raises(BuildError, match="no handler"):
        ruby.compile(tmp_path, tmp_path / "work")
    (tmp_path / "plugin.rb").write_text('require "omnicore"\nOmnicore.handler :x do |i|\n')
    with pytest.raises(BuildError, match="syntax error"):
        ruby.compile(tmp_path, tmp_path / "work")
    (tmp_path / "plugin.rb").write_text(
        'require "omnicore"\nOmnicore.handler(:x) { |i| i }\nOmnicore::KV.get("k")\n')
    with pytest.raises(BuildError, match="host functions are for handlers"):
        ruby.compile(tmp_path, tmp_path / "work")


def test_pure_ruby_gems_are_bundled_and_ones_with_c_extensions_refused(tmp_path: Path) -> None:
    gem = tmp_path / "vendor" / "shout-1.0" / "lib"
    gem.mkdir(parents=True)
    (gem / "shout.rb").write_text("module Shout; def self.it(s) = s.upcase + '!'; end\n")
    # Config as the examples use it: the set-up has built the runtime importing log+config.
    (tmp_path / "plugin.rb").write_text(
        'require "omnicore"\nrequire "shout"\n'
        'Omnicore.handler(:shout) { |i| Shout.it(Omnicore::Config.get("x", i)) }\n')
    assert ruby.compile(tmp_path, tmp_path / "work")[:4] == b"\0asm"
    ext = tmp_path / "vendor" / "fast-2.0" / "ext" / "fast"
    ext.mkdir(parents=True)
    (ext / "extconf.rb").write_text("require 'mkmf'\n")
    (tmp_path / "vendor" / "fast-2.0" / "lib").mkdir()
    with pytest.raises(BuildError, match=r"gem fast-2.0 has a native extension "
                                         r"\(ext/fast/extconf.rb\).*pure-Ruby gems only"):
        ruby.compile(tmp_path, tmp_path / "work")


def test_capabilities_are_read_from_the_sources(tmp_path: Path) -> None:
    (tmp_path / "plugin.rb").write_text(
        "# Omnicore::HTTP in a comment asks for nothing\n"
        "Omnicore.json_handler(:a) { Omnicore::KV.get('x'); Omnicore::Secrets.get('s') }\n"
        "Omnicore.handler 'b', title: \"B's\", destructive: true do |i| i end\n")
    assert source.used_capabilities(tmp_path) == ["log", "kv", "secrets"]
    assert source.handler_names(tmp_path) == ["a", "b"]
    assert source.handler_descriptions(tmp_path) == {"b": {"title": "B's", "destructive": True}}


def test_the_sdk_numbers_host_functions_as_the_glue_does() -> None:
    text = (locations.sdk_dir("ruby") / "lib" / "omnicore" / "host.rb").read_text()
    listed = text.split("FUNCTIONS = %w[", 1)[1].split("]", 1)[0].split()
    assert listed == [f"{f.namespace}.{f.name}" for f in glue.HOST_FUNCTIONS]


def test_omnicore_new_plugin_ruby_says_how_to_build_call_and_test(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "omnicore.cli", "new", "plugin", "hi",
                           "--lang", "ruby"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert "omnicore call build/plugins/hi.wasm greet" in done.stdout
    assert "omnicore test hi" in done.stdout
    assert json.dumps(sorted(p.name for p in (tmp_path / "hi").iterdir())) == \
        '[".gitignore", "omnicore.toml", "plugin.rb", "test"]'
