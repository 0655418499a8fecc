"""Every YAML the product reads refuses a key stated twice, naming the key, the file and both
lines (issue 61, item 3): PyYAML keeps the last of two equal keys and drops the first without a
word, and a second top-level ``plugins:`` emptied every grant of the demo. One door reads YAML
(``omnicore/yamlfile.py``); a module that calls PyYAML's loaders itself fails here."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

import omnicore
from omnicore import yamlfile
from omnicore.cli import main
from omnicore.config import load_config
from omnicore.errors import ConfigError
from omnicore.plugins.sidecar import read_sidecar, read_sidecar_data
from omnicore.workflows import DefinitionError, parse
from tests.pysource import parse as parse_source

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(omnicore.__file__).parent
DOOR = PACKAGE / "yamlfile.py"

TWO_PLUGINS = textwrap.dedent("""\
    name: demo
    plugins:
      greeter:
        grants: [log]
    console:
      port: 8470
    plugins:
      trust:
        require: signed
    """)


# -- the door --------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "key", "first", "again"), [
    (TWO_PLUGINS, "plugins", 2, 7),
    ("a:\n  b: 1\n  c: 2\n  b: 3\n", "b", 2, 4),
    ("- {x: 1, x: 2}\n", "x", 1, 1),
    ("1: one\n0x1: also one\n", 1, 1, 2),  # equal as values, though written apart
])
def test_a_key_stated_twice_is_refused_with_both_lines_and_the_file(
        text: str, key: object, first: int, again: int) -> None:
    with pytest.raises(yamlfile.DuplicateKeyError) as info:
        yamlfile.load(text, "app/omnicore.yaml")
    err = info.value
    assert (err.key, err.first_line, err.line, err.source) == (key, first, again,
                                                               "app/omnicore.yaml")
    assert err.problem == (f"duplicate key {key!r} in app/omnicore.yaml: on line {first} and "
                           f"again on line {again} (YAML would keep only the last and drop "
                           f"the first: merge them into one)")
    assert isinstance(err, yaml.MarkedYAMLError)  # every reader's `except YAMLError` sees it


def test_merge_keys_override_as_yaml_means_them_and_a_repeat_beside_them_is_refused() -> None:
    text = "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  x: 3\n"
    assert yamlfile.load(text) == {"base": {"x": 1, "y": 2}, "use": {"x": 3, "y": 2}}
    two = "a: &a {x: 1}\nb: &b {x: 2}\nc:\n  <<: [*a, *b]\n"
    assert yamlfile.load(two)["c"] == {"x": 1}  # the first merged mapping wins: YAML's rule
    with pytest.raises(yamlfile.DuplicateKeyError, match="'x' in <yaml>: on line 4 and again "
                                                         "on line 5"):
        yamlfile.load("base: &b {x: 1}\nuse:\n  <<: *b\n  x: 3\n  x: 4\n")
    with pytest.raises(yamlfile.DuplicateKeyError, match=r"'x'.* line 1 and again on line 1"):
        yamlfile.load("base: &b {x: 1, x: 2}\nuse: {<<: *b}\n")


def test_the_door_reads_what_safe_load_reads() -> None:
    text = "a: [1, 2.5, true, null, '3']\nb: {c: 2020-01-02}\n---\nsecond: 2\n"
    assert list(yamlfile.load_all(text)) == list(yaml.safe_load_all(text))
    assert yamlfile.load("") is None and yamlfile.compose("") is None
    with pytest.raises(yaml.constructor.ConstructorError):
        yamlfile.load("!!python/object:os.system {}\n")  # still safe
    node = yamlfile.compose("a:\n  b: 1\n", "f.yaml")
    assert node is not None and node.start_mark.name == "f.yaml"


# -- every reader ----------------------------------------------------------------------------

def test_the_app_config_refuses_a_second_section(tmp_path: Path) -> None:
    path = tmp_path / "omnicore.yaml"
    path.write_text(TWO_PLUGINS)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).startswith(f"invalid YAML in {path}:7: duplicate key 'plugins' in "
                                      f"{path}: on line 2 and again on line 7")
    assert info.value.key == "plugins"


def test_config_show_never_prints_an_emptied_section(tmp_path: Path) -> None:
    (tmp_path / "omnicore.yaml").write_text(TWO_PLUGINS)
    result = CliRunner().invoke(main, ["config", "show", str(tmp_path)])
    assert result.exit_code == 1 and result.stdout == ""
    assert "duplicate key 'plugins'" in result.stderr
    assert "line 2 and again on line 7" in result.stderr


def test_a_list_in_an_env_var_refuses_a_repeated_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="OMNICORE_PLUGINS is not valid YAML"):
        load_config(environ={"OMNICORE_PLUGINS": "{a: {grants: [log]}, a: {}}"})


def test_a_sidecar_refuses_a_repeated_key(tmp_path: Path) -> None:
    wasm = tmp_path / "greeter.wasm"
    wasm.write_bytes(b"\0asm\1\0\0\0")
    sidecar = tmp_path / "greeter.yaml"
    sidecar.write_text("grants: [log]\nlimits: {timeout_ms: 50}\ngrants: [kv]\n")
    for read in (read_sidecar, read_sidecar_data):
        with pytest.raises(ConfigError, match=f"duplicate key 'grants' in {sidecar}: on line 1 "
                                              "and again on line 3"):
            read(wasm)


def test_a_workflow_refuses_a_repeated_key_at_its_line() -> None:
    text = "format: omniflow/v1\nname: w\nsteps:\n  - id: a\n    plugin: p\n    id: b\n"
    with pytest.raises(DefinitionError) as info:
        parse(text, "w.yaml")
    [problem] = info.value.problems
    assert problem.line == 6 and "duplicate key 'id' in w.yaml: on line 4" in problem.message


def test_the_cli_sidecar_files_refuse_a_repeated_key(tmp_path: Path) -> None:
    from omnicore.cli.catalog import _read_sidecar
    from omnicore.cli.oci import _read_sidecar_file
    from omnicore.cli.remote import data_dir_of

    path = tmp_path / "evil.yaml"
    path.write_text("limits: {timeout_ms: 50}\nlimits: {timeout_ms: 999999}\n")
    with pytest.raises(click.UsageError, match="duplicate key 'limits'"):
        _read_sidecar(path)
    with pytest.raises(ConfigError, match="duplicate key 'limits'"):
        _read_sidecar_file(path)
    # The CLI's quick read of data_dir gives up, and the config load that follows names it.
    config = tmp_path / "omnicore.yaml"
    config.write_text("data_dir: a\ndata_dir: b\n")
    assert data_dir_of(config) is None


def test_the_workflow_editors_round_trip_loader_refuses_a_repeated_key_too() -> None:
    from ruamel.yaml.error import YAMLError

    from omnicore.workflows.roundtrip import _yaml

    with pytest.raises(YAMLError, match="duplicate key"):
        _yaml("a: 1\n").load("a: 1\nb: 2\na: 3\n")


def _shipped_yaml() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.yaml", "*.yml"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    # mkdocs.yml is mkdocs' (its `!!python/name:` tags are for its own loader).
    return [ROOT / p for p in listed if not p.startswith("tests/") and p != "mkdocs.yml"]


@pytest.mark.parametrize("path", _shipped_yaml(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_we_ship_passes_the_door(path: Path) -> None:
    docs = list(yamlfile.load_all(path.read_text(encoding="utf-8"), str(path)))
    assert docs


def test_the_shipped_yaml_includes_the_demo_and_the_examples() -> None:
    names = {str(p.relative_to(ROOT)) for p in _shipped_yaml()}
    assert {"plugins/demo.yaml", "examples/workflows/greet-many.yaml",
            "host/omnicore/scaffolds/app/omnicore.yaml", "deploy/compose.yaml"} <= names


# -- one door --------------------------------------------------------------------------------

#: PyYAML's readers: a call of any of them, or a mention of its loader classes, outside the
#: door reads YAML that a repeated key silently empties.
_READERS = frozenset({"load", "safe_load", "full_load", "unsafe_load", "load_all",
                      "safe_load_all", "full_load_all", "unsafe_load_all", "compose",
                      "compose_all", "parse", "scan", "SafeLoader", "Loader", "FullLoader",
                      "UnsafeLoader", "BaseLoader", "CLoader", "CSafeLoader", "CFullLoader",
                      "CBaseLoader", "CUnsafeLoader"})
#: The one other reader: the workflow editor's round trip keeps comments with ruamel.yaml,
#: whose loader refuses a repeated key itself (its default, set explicitly there; pinned by
#: test_the_workflow_editors_round_trip_loader_refuses_a_repeated_key_too).
_RUAMEL_USERS = {"workflows/roundtrip.py"}


def yaml_reads(source: str) -> list[str]:
    """Where ``source`` reads YAML around the door (line: what)."""
    tree = parse_source(source)
    pyyaml: set[str] = set()  # local names bound to the yaml module
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "yaml":
                    pyyaml.add(alias.asname or "yaml")
                elif alias.name.startswith("ruamel"):
                    found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] == "yaml":
                found += [f"{node.lineno}: from {node.module} import {a.name}"
                          for a in node.names if a.name in _READERS]
            elif node.module.startswith("ruamel"):
                found += [f"{node.lineno}: from {node.module} import {a.name}"
                          for a in node.names]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in _READERS
                and isinstance(node.value, ast.Name) and node.value.id in pyyaml):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return sorted(found, key=lambda use: int(use.split(":")[0]))


def test_the_scan_sees_reads_not_writes() -> None:
    assert yaml_reads(textwrap.dedent("""
        import yaml
        yaml.safe_dump({}); yaml.YAMLError; yaml.MarkedYAMLError
        from omnicore import yamlfile
        yamlfile.load("a: 1"); other.safe_load("x")
        # yaml.safe_load in a comment
        '''yaml.load'''
        """)) == []
    assert yaml_reads(textwrap.dedent("""
        import yaml
        import yaml as y
        yaml.safe_load(t)
        y.compose(t, Loader=y.SafeLoader)
        from yaml import safe_load, safe_dump
        from yaml.loader import SafeLoader
        from ruamel.yaml import YAML
        yaml.load_all(t)
        """)) == ["4: yaml.safe_load", "5: y.compose", "5: y.SafeLoader",
                  "6: from yaml import safe_load", "7: from yaml.loader import SafeLoader",
                  "8: from ruamel.yaml import YAML", "9: yaml.load_all"]


def test_only_the_door_reads_yaml() -> None:
    offenders: dict[str, list[str]] = {}
    roots = [(PACKAGE, p) for p in PACKAGE.rglob("*.py")]
    roots += [(ROOT / "scripts", p) for p in (ROOT / "scripts").rglob("*.py")]
    for base, path in sorted(roots):
        rel = str(path.relative_to(base))
        if path == DOOR:
            continue
        uses = yaml_reads(path.read_text(encoding="utf-8"))
        if rel in _RUAMEL_USERS:
            uses = [u for u in uses if "ruamel" not in u]
        if uses:
            offenders[rel] = uses
    assert offenders == {}
    assert yaml_reads(DOOR.read_text()) != []  # the scan does see the door's own
    assert all(yaml_reads((PACKAGE / rel).read_text()) for rel in _RUAMEL_USERS)


def test_the_door_imports_nothing_of_the_host() -> None:
    # A command that talks to a running host reads omnicore.yaml's data_dir through the door
    # and may load no host code (tests/cli/test_cli_lazy.py): the door is PyYAML and itself.
    probe = ("import sys, omnicore.yamlfile\n"
             "print(' '.join(m for m in sys.modules if m.startswith('omnicore')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert sorted(out) == ["omnicore", "omnicore.yamlfile"]
