"""CHANGELOG.md names what a user can meet: every configuration key, CLI command and option,
REST operation, error and host function of the generated references (scripts/gen_docs.py)
that came after the changelog began has an entry naming it, in backticks.

The names the references had when CHANGELOG.md was written (commit 78963ba, the documentation
site and the changelog's first text) are in tests/changelog_baseline.txt: its summary of the
first version covers them. That list is frozen: a name added since must be written in the
changelog, never added to the list (:func:`test_the_baseline_is_frozen`).

What counts as naming one, within one entry (a list item with its continuation lines and
sub-items, or a paragraph):

* a config key: a code span that is the dotted key (``plugins.trust.*`` for the reference's
  ``trust.*``; a mapping's ``<name>`` as written); a section is named by a key beneath it too;
* a CLI command: a code span that is the command or starts with it (``omnicore plugins pull
  REF``); ``omnicore tasks`` is ``omnicore jobs``'s old name and the same commands;
* an option: a code span holding its command and the flag, or an entry that names the command
  and has a code span starting with the flag (``--json``);
* a REST operation: a code span of its method and path (``GET/PUT /api/v1/x/{name}`` names
  both), a query string allowed after the path;
* an error: a code span of its class name (``OlderModule``) or its dotted name;
* a host function: a code span ``namespace.function``, or the namespace and the function in
  one entry.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASELINE = Path(__file__).with_name("changelog_baseline.txt")
#: How many names the frozen baseline holds (the references at 78963ba).
BASELINE_SIZE = 457
#: Old command names that are the same commands under a new one (CHANGELOG, Deprecated).
COMMAND_ALIASES = {"omnicore tasks": "omnicore jobs"}


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_docs", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class Name(NamedTuple):
    """One name of the references: its kind, and its parts (a command and a flag, a method and
    a path, a namespace and a function; one part otherwise)."""

    kind: str
    parts: tuple[str, ...]

    def line(self) -> str:
        return f"{self.kind} {' '.join(self.parts)}"


def reference_names(gen: ModuleType) -> list[Name]:
    """Every name the generated references list, as gen_docs reads them from the code."""
    import click

    names = []
    for section in gen.config_sections():
        names += [Name("config", (key.key,)) for key in section.keys]
    for command, cmd in gen.cli_commands():
        names.append(Name("command", (command,)))
        names += [Name("option", (command, "/".join(p.opts))) for p in cmd.params
                  if isinstance(p, click.Option) and not p.hidden]
    names += [Name("rest", (method.upper(), path)) for method, path, _ in gen.rest_operations()]
    names += [Name("error", (e.name,)) for e in gen.error_types()]
    names += [Name("function", (cap.namespace, fn.name))
              for cap, _ in gen.host_functions() for fn in cap.functions]
    return names


# --- what the changelog names -------------------------------------------------------------

_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def entries(changelog: str) -> list[list[str]]:
    """The code spans of each entry: a top-level list item (its continuation lines and
    sub-items with it) or a paragraph."""
    units: list[list[str]] = []
    text: list[str] = []

    def close() -> None:
        if text:
            units.append([" ".join(m.group(2).split()) for m in _SPAN.finditer("\n".join(text))])
            text.clear()

    for line in changelog.splitlines():
        if not line.strip() or line.startswith(("#", "- ", "* ")):
            close()
        if line.strip():
            text.append(line)
    close()
    return units


def _command(span: str) -> str:
    for old, new in COMMAND_ALIASES.items():
        if span == old or span.startswith(old + " "):
            return new + span[len(old):]
    return span


def _starts(span: str, head: str) -> bool:
    return span == head or span.startswith(head + " ")


def _flag_in(span: str, flags: Iterable[str]) -> bool:
    first = span.split(" ")[0]
    return any(first == f or first.startswith(f + "=") for f in flags)


def covered(name: Name, units: list[list[str]]) -> bool:
    """Whether one entry of the changelog names ``name`` (the rules of the module's text)."""
    spans = [s for unit in units for s in unit]
    if name.kind == "config":
        key = name.parts[0]
        keys = {key} | ({"plugins." + key} if key.split(".")[0] == "trust" else set())
        return any(s.split(" ")[0].rstrip(":,") == k or s.startswith(k + ".")
                   for s in spans for k in keys)
    if name.kind == "command":
        return any(_starts(_command(s), _command(name.parts[0])) for s in spans)
    if name.kind == "option":
        command, flags = _command(name.parts[0]), name.parts[1].split("/")
        for unit in units:
            commands = [s for s in map(_command, unit) if _starts(s, command)]
            if any(_flag_in(s, flags) for s in unit) and commands:
                return True
            if any(f in c[len(command):].split() for c in commands for f in flags):
                return True
        return False
    if name.kind == "rest":
        method, path = name.parts
        for s in spans:
            words = s.split(" ")
            if len(words) == 2 and method in re.split(r"[/|]", words[0]) \
                    and words[1].split("?")[0] == path:
                return True
        return False
    if name.kind == "error":
        full = name.parts[0]
        return any(s in (full, full.rsplit(".", 1)[-1]) for s in spans)
    namespace, function = name.parts
    return any(f"{namespace}.{function}" in unit or (namespace in unit and function in unit)
               for unit in units)


def missing_entries(names: Iterable[Name], baseline: set[str], changelog: str) -> list[str]:
    units = entries(changelog)
    return [n.line() for n in names if n.line() not in baseline and not covered(n, units)]


def _baseline() -> set[str]:
    return {line for line in BASELINE.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")}


# --- the tests ----------------------------------------------------------------------------

def test_every_new_name_has_a_changelog_entry() -> None:
    missing = missing_entries(reference_names(_load_generator()), _baseline(),
                              (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"))
    assert missing == [], (
        "names in the generated references with no CHANGELOG.md entry naming them in "
        "backticks (say what a user gains under its release's Added/Changed/...):\n  "
        + "\n  ".join(missing))


def test_the_baseline_is_frozen() -> None:
    # A name introduced later belongs in the changelog: growing this list to pass the test
    # above would hide it. Names the code no longer has may stay; the list never grows.
    assert len(_baseline()) == BASELINE_SIZE


@pytest.mark.parametrize(("name", "entry"), [
    (Name("config", ("catalog.new_key",)), "- `catalog.new_key` sets it."),
    (Name("config", ("trust.new_key",)), "- `plugins.trust.new_key: true` sets it."),
    (Name("config", ("bridges",)), "- **Bridges**: `bridges.<name>.kind`."),
    (Name("command", ("omnicore plugins frob",)), "- `omnicore plugins frob NAME` frobs."),
    (Name("command", ("omnicore tasks frob",)), "- `omnicore jobs frob` (also the old name)."),
    (Name("option", ("omnicore plugins frob", "-q/--quiet")),
     "- `omnicore plugins frob`, now\n  with `--quiet`."),
    (Name("option", ("omnicore plugins frob", "-q/--quiet")), "- `omnicore plugins frob -q`."),
    (Name("rest", ("PUT", "/api/v1/frob/{name}")), "- `GET/PUT /api/v1/frob/{name}`."),
    (Name("rest", ("POST", "/api/v1/frob")), "- `POST /api/v1/frob?dry=1` frobs."),
    (Name("error", ("plugins.catalog.Frobbed",)), "- refused `Frobbed` (409)."),
    (Name("function", ("omnicore:kv", "frob")), "- `omnicore:kv` gains `frob`."),
])
def test_a_new_name_fails_until_an_entry_names_it(name: Name, entry: str) -> None:
    changelog = "# Changelog\n\n## [Unreleased]\n\n### Added\n\n- Something else: `log.level`.\n"
    assert missing_entries([name], set(), changelog) == [name.line()]
    assert missing_entries([name], set(), changelog + entry + "\n") == []
    assert missing_entries([name], {name.line()}, changelog) == []  # the baseline's


@pytest.mark.parametrize(("name", "entry"), [
    (Name("config", ("catalog.new_key",)), "- `catalog.new_key_two` and catalog.new_key."),
    (Name("config", ("catalog",)), "- the catalog (`catalogs.x`)."),
    (Name("command", ("omnicore plugins frob",)), "- `omnicore plugins frobnicate`."),
    (Name("option", ("omnicore plugins frob", "--quiet")),
     "- `omnicore plugins frob`.\n- `omnicore plugins other --quiet`, `--quiet`."),
    (Name("rest", ("DELETE", "/api/v1/frob")), "- `GET /api/v1/frob`, `/api/v1/frob`."),
    (Name("error", ("plugins.catalog.Frobbed",)), "- refused as Frobbed (`Frobbedness`)."),
    (Name("function", ("omnicore:kv", "frob")), "- `omnicore:kv`.\n- `frob`."),
])
def test_a_near_miss_names_nothing(name: Name, entry: str) -> None:
    changelog = "# Changelog\n\n### Added\n\n" + entry + "\n"
    assert missing_entries([name], set(), changelog) == [name.line()]


if __name__ == "__main__":
    # The reference's names as the baseline file holds them, one a line: run against a
    # checkout's scripts/gen_docs.py (with its host/ first on sys.path) to see them.
    print("\n".join(sorted({n.line() for n in reference_names(_load_generator())})))
