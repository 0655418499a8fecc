"""A bare file's ``omnicore call`` with the user's own module cache (no
``OMNICORE_CACHE_DIR``: ``~/.cache/omnicore/modules``) imports none of the build tools
(``omnicore.toolchains``, a few percent of the call's imports: issue 63 item 5), and finds its
cache where the build tools' rule puts it. Nor jsonschema, for a plugin without a config schema
or with a plain one (``sandbox.configschema``), while bad config is still refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from omnicore.cli.plugins import user_modules_dir
from omnicore.sandbox import wasmbin
from omnicore.toolchains import locations
from tests.cli.test_cli_lazy import _loaded, _modules
from tests.host_fixtures import config_wasm, write


@pytest.mark.parametrize("xdg", [True, False])
def test_the_call_cache_is_where_the_build_tools_say(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     xdg: bool) -> None:
    monkeypatch.delenv("OMNICORE_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if xdg:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    else:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert user_modules_dir() == locations.user_cache_dir() / "modules"
    assert user_modules_dir().is_relative_to(tmp_path / ("xdg" if xdg else "home"))


def test_a_bare_file_call_imports_no_build_tools(tmp_path: Path) -> None:
    path = write(tmp_path, "conf.wasm", config_wasm("conf"))
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CACHE_HOME": "", "OMNICORE_CACHE_DIR": ""}
    args = ["call", str(path), "get", "--input", "k", "--grant", "config", "--config", "k=1"]
    for _ in range(2):  # compiled into the user's cache, then read from it
        result, modules = _modules(args, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"1\n"
        assert _loaded(modules, ("omnicore.toolchains",)) == []
    assert any((home / ".cache" / "omnicore" / "modules").iterdir())


def _with_schema(schema: dict[str, Any] | None) -> bytes:
    manifest: dict[str, Any] = {"abi": 1, "name": "conf", "version": "1.0.0", "handlers": ["get"]}
    if schema is not None:
        manifest["config"] = schema
    return wasmbin.set_custom_section(config_wasm("conf"), "omnicore.manifest",
                                      json.dumps(manifest).encode())


#: As greeter-rust's: a type and described properties (what `omnicore new` plugins declare).
PLAIN = {"type": "object", "properties": {"k": {"type": "string", "description": "a key"}}}
#: With a keyword the host leaves to jsonschema (a regular expression).
PATTERN = {"type": "object", "properties": {"k": {"type": "string", "pattern": "^[a-z]+$"}}}
STRICT = {"type": "object", "required": ["k"], "additionalProperties": False,
          "properties": {"k": {"type": "string", "minLength": 2}}}


@pytest.mark.parametrize(("schema", "config"), [
    (None, []), (None, ["--config", "k=ab"]), (PLAIN, []), (PLAIN, ["--config", "k=ab"]),
    (STRICT, ["--config", "k=ab"])])
def test_a_bare_file_call_imports_no_jsonschema_for_a_plain_schema(
        tmp_path: Path, schema: dict[str, Any] | None, config: list[str]) -> None:
    # No schema, or one the host judges itself, and config it accepts: jsonschema (about a
    # quarter of the call's imports) is not imported (issue 63 item 5).
    path = write(tmp_path, "conf.wasm", _with_schema(schema))
    result, modules = _modules(["call", str(path), "get", "--input", "k", "--grant", "config",
                                *config], env={"OMNICORE_CACHE_DIR": str(tmp_path / "cache")})
    if config:
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"ab\n"
    else:  # the plugin's own error: no key k
        assert result.returncode == 1 and b"NOT_FOUND" in result.stderr, result.stderr
    assert _loaded(modules, ("jsonschema", "referencing")) == []
    # Nor what only a sidecar needs (none here), or only a sidecar's refusal.
    assert _loaded(modules, ("tomllib", "difflib", "yaml")) == []


@pytest.mark.parametrize(("schema", "config", "said"), [
    (STRICT, [], "config (root): 'k' is a required property"),
    (STRICT, ["--config", "k=5"], "config k: 5 is not of type 'string'"),
    (STRICT, ["--config", "k=a"], "config k: 'a' is too short"),
    (STRICT, ["--config", "k=ab", "--config", "j=1"],
     "config (root): Additional properties are not allowed ('j' was unexpected)"),
    (PLAIN, ["--config", "k=[1]"], "config k: [1] is not of type 'string'"),
    (PATTERN, ["--config", "k=AB"], "config k: 'AB' does not match '^[a-z]+$'"),
])
def test_a_bare_file_call_still_refuses_bad_config(tmp_path: Path, schema: dict[str, Any],
                                                   config: list[str], said: str) -> None:
    # An empty config against a schema with `required` included: refused before any call, in
    # jsonschema's words, whether the host judged the schema itself or not.
    path = write(tmp_path, "conf.wasm", _with_schema(schema))
    result, modules = _modules(["call", str(path), "get", "--input", "k", "--grant", "config",
                                *config], env={"OMNICORE_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 1, result.stderr
    assert f"plugin 'conf': {said}" in result.stderr.decode()
    assert result.stdout == b""
    assert "jsonschema" in modules


def test_a_bare_file_with_an_invalid_schema_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "conf.wasm", _with_schema({"type": "object", "required": "k"}))
    result, _ = _modules(["call", str(path), "get", "--input", "k", "--grant", "config"],
                         env={"OMNICORE_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 1
    assert "manifest config schema is invalid: 'k' is not of type 'array'" in \
        result.stderr.decode()
