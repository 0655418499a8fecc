from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnicore.adapters import Environment
from omnicore.config import load_config, render_config
from omnicore.errors import ConfigError

LOCAL = Environment(kind="local", reasons=(), cpus=3,
                    defaults={"log": {"format": "text"},
                              "workers": 3, "data_dir": "./.omnicore"})


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "omnicore.yaml"
    p.write_text(text)
    return p


def test_defaults_and_adapter_layer(tmp_path: Path) -> None:
    cfg = load_config(environ={}, environment=LOCAL)
    assert cfg.sandbox.limits.timeout_ms == 1000
    assert cfg.workers == 3 and cfg.source_of("workers") == "adapter local"
    assert cfg.source_of("sandbox.limits.timeout_ms") == "default"
    assert cfg.sandbox.limits.max_memory_bytes == 64 * 1024 * 1024
    assert cfg.sandbox.limits.fuel is None
    assert cfg.sandbox.circuit.failure_threshold == 5
    assert cfg.data_dir == Path.cwd() / ".omnicore"
    assert cfg.sandbox.cache_dir == cfg.data_dir / "cache"


def test_precedence_file_env_override(tmp_path: Path) -> None:
    path = write(tmp_path, "name: from-file\nlog:\n  level: debug\n  format: json\n"
                           "workers: 7\n")
    env = {"OMNICORE_LOG__LEVEL": "warning", "OMNICORE_WORKERS": "8"}
    cfg = load_config(path, environ=env, overrides={"log.level": "error"},
                      environment=LOCAL)
    assert cfg.name == "from-file" and cfg.source_of("name") == f"{path}:1"
    assert cfg.log.format == "json" and cfg.source_of("log.format") == f"{path}:4"
    assert cfg.workers == 8 and cfg.source_of("workers") == "env OMNICORE_WORKERS"
    assert cfg.log.level == "error" and cfg.source_of("log.level") == "override"
    nested = load_config(path, environ=env, overrides={"log": {"level": "critical"}},
                         environment=LOCAL)
    assert nested.log.level == "critical" and nested.log.format == "json"


def test_paths_resolve_against_the_file(tmp_path: Path) -> None:
    appdir = tmp_path / "app"
    appdir.mkdir()
    path = appdir / "omnicore.yaml"
    path.write_text("data_dir: state\nsandbox: {cache_dir: /abs/cache}\n")
    cfg = load_config(path, environ={}, environment=LOCAL)
    assert cfg.data_dir == appdir / "state"
    assert cfg.plugins_dir == appdir / "plugins"
    assert cfg.sandbox.cache_dir == Path("/abs/cache")


def test_plugins_section(tmp_path: Path) -> None:
    path = write(tmp_path, """
plugins:
  greeter:
    grants: [log, kv]
    config: {greeting: hi}
  fetcher:
    grants:
      http: {hosts: [example.com]}
      kv:
    limits: {timeout_ms: 50}
    enabled: false
""")
    cfg = load_config(path, environ={}, environment=LOCAL)
    assert cfg.plugins["greeter"].grants == ["log", "kv"]
    assert cfg.plugins["greeter"].config == {"greeting": "hi"}
    assert cfg.plugins["fetcher"].grants == {"http": {"hosts": ["example.com"]}, "kv": {}}
    assert cfg.plugins["fetcher"].grant_names() == ["http", "kv"]
    assert cfg.plugins["fetcher"].limits == {"timeout_ms": 50}
    assert cfg.plugins["fetcher"].enabled is False


def test_unknown_key_names_it_with_close_match_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nlog:\n  levle: debug\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={}, environment=LOCAL)
    err = info.value
    assert err.key == "log.levle" and err.source == f"{path}:3"
    assert "unknown config key 'log.levle'" in str(err)
    assert "did you mean 'log.level'?" in str(err)


def test_unknown_top_level_key_without_close_match(tmp_path: Path) -> None:
    path = write(tmp_path, "zzzzqqq: 1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'zzzzqqq'.*known keys here"):
        load_config(path, environ={}, environment=LOCAL)


def test_unknown_plugin_key_and_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "plugins:\n  p:\n    grant: [kv]\n")
    with pytest.raises(ConfigError, match=r"'plugins.p.grant'.*did you mean 'plugins.p.grants'"):
        load_config(path, environ={}, environment=LOCAL)
    path = write(tmp_path, "plugins:\n  p:\n    limits: {timeout: 5}\n")
    with pytest.raises(ConfigError, match="did you mean 'timeout_ms'") as info:
        load_config(path, environ={}, environment=LOCAL)
    assert info.value.key == "plugins.p.limits"


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nlog:\n  level: [1, 2\nworkers: 2\n")
    with pytest.raises(ConfigError, match=rf"invalid YAML in {path}:4"):
        load_config(path, environ={}, environment=LOCAL)


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path, environ={}, environment=LOCAL)
    empty = write(tmp_path, "")
    assert load_config(empty, environ={}, environment=LOCAL).name == "omnicore"


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/omnicore.yaml", environ={}, environment=LOCAL)


def test_bad_value_in_file_names_key_value_source(tmp_path: Path) -> None:
    path = write(tmp_path, "sandbox:\n  limits:\n    timeout_ms: -5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={}, environment=LOCAL)
    assert info.value.key == "sandbox.limits.timeout_ms" and info.value.value == -5
    assert f"invalid value -5 for 'sandbox.limits.timeout_ms' ({path}:3)" in str(info.value)


def test_env_var_of_wrong_type_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"OMNICORE_SANDBOX__LIMITS__TIMEOUT_MS": "ninety"},
                    environment=LOCAL)
    assert info.value.source == "env OMNICORE_SANDBOX__LIMITS__TIMEOUT_MS"
    assert "OMNICORE_SANDBOX__LIMITS__TIMEOUT_MS" in str(info.value)
    assert "'ninety'" in str(info.value)


def test_env_unknown_key_and_malformed_name() -> None:
    with pytest.raises(ConfigError, match=r"'sandbx'.*env OMNICORE_SANDBX__POOLING.*'sandbox'"):
        load_config(environ={"OMNICORE_SANDBX__POOLING": "1"}, environment=LOCAL)
    with pytest.raises(ConfigError, match="OMNICORE_LOG____LEVEL does not name"):
        load_config(environ={"OMNICORE_LOG____LEVEL": "1"}, environment=LOCAL)


def test_env_structured_values_and_bools() -> None:
    cfg = load_config(environ={"OMNICORE_PLUGINS__GREETER__GRANTS": "[log, kv]",
                               "OMNICORE_SANDBOX__WATCH": "false",
                               "OMNICORE_APPDIR": "/ignored/path", "OMNICORE_DEBUG": "1"},
                      environment=LOCAL)
    assert cfg.plugins["greeter"].grants == ["log", "kv"]
    assert cfg.sandbox.watch is False
    with pytest.raises(ConfigError, match="not valid YAML/JSON"):
        load_config(environ={"OMNICORE_PLUGINS__G__GRANTS": "[log"}, environment=LOCAL)


def test_environment_key_selects_adapter(tmp_path: Path) -> None:
    path = write(tmp_path, "environment: edge\n")
    cfg = load_config(path, environ={})
    assert cfg.environment == "edge"
    assert cfg.source_of("workers") == "adapter edge"
    assert cfg.workers <= 2
    bad = write(tmp_path, "environment: moon\n")
    with pytest.raises(ConfigError, match="unknown environment 'moon'"):
        load_config(bad, environ={})


def test_render_masks_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, "plugins:\n  p:\n    config: {api_key: s3cr3t, region: eu}\n"
                           "capabilities:\n  secrets: {password: hunter2}\n")
    cfg = load_config(path, environ={}, environment=LOCAL)
    rows = {k: (v, s) for k, v, s in render_config(cfg)}
    assert rows["plugins.p.config.api_key"] == ("****", f"{path}:3")
    assert rows["plugins.p.config.region"][0] == "eu"
    assert rows["capabilities.secrets.password"][0] == "****"
    assert rows["sandbox.limits.timeout_ms"] == ("1000", "default")
    unmasked = {k: v for k, v, _ in render_config(cfg, mask=False)}
    assert unmasked["plugins.p.config.api_key"] == "s3cr3t"


def test_tool_variables_sharing_the_prefix_are_not_config() -> None:
    cfg = load_config(environ={"OMNICORE_CARGO": "/usr/bin/cargo", "OMNICORE_ESBUILD": "x",
                               "OMNICORE_RUST_SDK": "/sdk", "OMNICORE_WORKERS": "3"},
                      environment=LOCAL)
    assert cfg.workers == 3
    with pytest.raises(ConfigError, match="OMNICORE_WORKRS is not a config key; did you mean "
                                          "OMNICORE_WORKERS"):
        load_config(environ={"OMNICORE_WORKRS": "3"}, environment=LOCAL)


@pytest.mark.parametrize(("grants", "words"), [
    ("5", "must be a list of capability names"),
    ("[1, kv]", "capability names must be strings, got 1"),
    ("{http: 5}", "options of grant 'http' must be a mapping"),
])
def test_bad_grants_name_the_key(tmp_path: Path, grants: str, words: str) -> None:
    path = write(tmp_path, f"plugins:\n  p:\n    grants: {grants}\n")
    with pytest.raises(ConfigError, match=words) as info:
        load_config(path, environ={}, environment=LOCAL)
    assert info.value.key == "plugins.p.grants" and info.value.source == f"{path}:3"
    assert "list[str]" not in str(info.value)


def test_plugins_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "plugins:\n  - p\n")
    with pytest.raises(ConfigError, match=r"'plugins'.*valid dictionary"):
        load_config(path, environ={}, environment=LOCAL)


@settings(max_examples=60, deadline=None)
@given(file_port=st.none() | st.integers(1, 65535), env_port=st.none() | st.integers(1, 65535),
       over_port=st.none() | st.integers(1, 65535))
def test_later_layer_always_wins(tmp_path_factory: pytest.TempPathFactory,
                                 file_port: int | None, env_port: int | None,
                                 over_port: int | None) -> None:
    d = tmp_path_factory.mktemp("p")
    path = d / "omnicore.yaml"
    path.write_text("name: x\n" + (f"sandbox:\n  limits:\n    timeout_ms: {file_port}\n"
                                   if file_port else ""))
    env = {"OMNICORE_SANDBOX__LIMITS__TIMEOUT_MS": str(env_port)} if env_port else {}
    over = {"sandbox.limits.timeout_ms": over_port} if over_port else {}
    cfg = load_config(path, environ=env, overrides=over, environment=LOCAL)
    expected, source = 1000, "default"
    for value, src in ((file_port, f"{path}:4"),
                       (env_port, "env OMNICORE_SANDBOX__LIMITS__TIMEOUT_MS"),
                       (over_port, "override")):
        if value:
            expected, source = value, src
    assert cfg.sandbox.limits.timeout_ms == expected
    assert cfg.source_of("sandbox.limits.timeout_ms") == source
