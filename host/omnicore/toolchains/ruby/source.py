"""What a Ruby plugin project holds: its sources, handlers, capabilities and vendored gems,
read without running Ruby."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import locations
from omnicore.toolchains.ruby.glue import HOST_FUNCTIONS, MAX_HANDLERS

__all__ = ["CAPABILITIES", "ENTRY", "TEST_DIRS", "detect", "handler_descriptions",
           "handler_names", "stage", "used_capabilities", "vendored_gems"]

LANGUAGE = "ruby"
ENTRY = "plugin.rb"
#: Folders of a project that hold its tests (not shipped in the plugin).
TEST_DIRS = frozenset({"test", "tests", "spec"})
_SKIP = TEST_DIRS | {"build", "vendor", ".git", "node_modules"}
#: The SDK's capability modules, by the namespace each one imports.
CAPABILITIES = {"Log": "log", "Config": "config", "KV": "kv", "Memory": "memory",
                "Vectors": "vectors", "Tasks": "tasks", "HTTP": "http", "Events": "events",
                "Secrets": "secrets", "SQL": "sql", "Redis": "redis", "MCP": "mcp"}
_USES = re.compile(r"\bOmnicore::(" + "|".join(CAPABILITIES) + r")\b")
_HANDLER = re.compile(
    r"""^\s*(?:Omnicore\.)?(?:json_)?handler\s*\(?\s*(?::(\w+)|["']([a-z0-9_-]+)["'])""", re.M)
#: ``title: "..."``, ``description: '...'``, ``destructive: true`` on a handler's line.
_KEYWORD = re.compile(r"""\b(title|description|destructive):\s*"""
                      r"""(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|(true|false))""")
_COMMENT = re.compile(r"#[^{\n][^\n]*|#$", re.M)
_C_EXTENSION = ("extconf.rb", "*.c", "*.cc", "*.cpp", "*.so", "*.bundle", "*.dll", "Cargo.toml")


def detect(src: Path) -> bool:
    """A folder with ``plugin.rb``, or a ``.rb`` file."""
    if src.is_file():
        return src.suffix == ".rb"
    return (src / ENTRY).is_file()


def sources(src: Path) -> list[Path]:
    """The plugin's own Ruby files (not its tests, not its vendored gems)."""
    if src.is_file():
        return [src]
    return sorted(p for p in src.rglob("*.rb")
                  if not _SKIP & set(p.relative_to(src).parts[:-1])
                  and not p.name.endswith("_test.rb") and not p.name.startswith("test_"))


def _code(path: Path) -> str:
    return _COMMENT.sub("", path.read_text(encoding="utf-8"))


def handler_names(src: Path) -> list[str]:
    """The handlers the sources declare (``Omnicore.handler :name``), in source order."""
    names: list[str] = []
    for path in sources(src):
        for match in _HANDLER.finditer(_code(path)):
            name = match.group(1) or match.group(2)
            if name not in names:
                names.append(name)
    if not names:
        raise BuildError(f"{src.name}: no handler (declare one with Omnicore.handler :name do "
                         "|input| ... end)", plugin=src.stem, toolchain=LANGUAGE)
    if len(names) > MAX_HANDLERS:
        raise BuildError(f"{src.name}: {len(names)} handlers; a Ruby plugin has at most "
                         f"{MAX_HANDLERS}", plugin=src.stem, toolchain=LANGUAGE)
    return names


def handler_descriptions(src: Path) -> dict[str, dict[str, object]]:
    """What each handler's declaration says of it (``title:``, ``description:``,
    ``destructive:`` as literals on its line), by handler; ``omnicore.toml`` wins."""
    out: dict[str, dict[str, object]] = {}
    for path in sources(src):
        code = _code(path)
        for match in _HANDLER.finditer(code):
            end = code.find("\n", match.end())
            line = code[match.start():end if end >= 0 else None]
            entry: dict[str, object] = {}
            for key, double, single, flag in _KEYWORD.findall(line):
                entry[key] = (flag == "true") if flag else (double or single).replace('\\"', '"')
            if entry:
                out.setdefault(match.group(1) or match.group(2), entry)
    return out


def used_capabilities(src: Path) -> list[str]:
    """The namespaces the sources use (``Omnicore::KV`` -> ``kv``; ``log`` always)."""
    used = {"log"}
    for path in sources(src):
        used.update(CAPABILITIES[m] for m in _USES.findall(_code(path)))
    order = list(dict.fromkeys(f.namespace for f in HOST_FUNCTIONS))
    return [n for n in order if n in used]


def vendored_gems(src: Path) -> list[Path]:
    """The gems unpacked under ``vendor/`` (``gem unpack NAME --target vendor``), each a
    folder with ``lib/``. BuildError for a gem with a C extension: it cannot load inside
    WebAssembly."""
    vendor = (src if src.is_dir() else src.parent) / "vendor"
    if not vendor.is_dir():
        return []
    gems = []
    for gem in sorted(p for p in vendor.iterdir() if p.is_dir()):
        for pattern in _C_EXTENSION:
            found = next(iter(gem.rglob(pattern)), None)
            if found is not None:
                raise BuildError(
                    f"gem {gem.name} has a native extension ({found.relative_to(gem)}): a Ruby "
                    "plugin can use pure-Ruby gems only, since compiled extensions cannot load "
                    "inside WebAssembly", plugin=src.stem, toolchain=LANGUAGE)
        if not (gem / "lib").is_dir():
            raise BuildError(f"vendor/{gem.name} is not an unpacked gem (no lib/ folder)",
                             plugin=src.stem, toolchain=LANGUAGE)
        gems.append(gem)
    return gems


def stage(src: Path, sdk: Path, dest: Path, boot: str, *, tests: bool = False) -> None:
    """Lay out ``/omnicore`` for the interpreter: ``sdk/``, ``plugin/``, ``gems/<name>/``
    and ``boot.rb`` (and ``contract/host.json`` for ``tests``)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copytree(sdk / "lib", dest / "sdk")
    plugin = dest / "plugin"
    if src.is_file():
        plugin.mkdir()
        shutil.copy(src, plugin / ENTRY)
    else:
        skip = {"build", "vendor", ".git", "node_modules"} | (set() if tests else TEST_DIRS)
        # A work folder inside the project (its own stage among them) is not the project.
        own = {str(dest.parents[i]) for i in range(len(dest.parents))} | {str(dest)}
        shutil.copytree(src, plugin, ignore=lambda d, names: [
            n for n in names if n in skip or str(Path(d) / n) in own])
    for gem in vendored_gems(src):
        shutil.copytree(gem / "lib", dest / "gems" / gem.name)
    if tests:
        # The host's answers, which the SDK's test host reads its Redis commands from.
        (dest / "contract").mkdir()
        shutil.copy(locations.sdk_dir("contract") / "host.json", dest / "contract" / "host.json")
    (dest / "boot.rb").write_text(boot, encoding="utf-8")
