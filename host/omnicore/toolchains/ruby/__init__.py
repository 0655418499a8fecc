"""Ruby plugins: CRuby for WASI (npm ``@ruby/3.4-wasm-wasi``) with the plugin pre-loaded.

A project is a folder with ``plugin.rb`` (and ``omnicore.toml``), or a single ``.rb`` file.
Handlers are declared with the SDK (``sdk/ruby``): ``Omnicore.handler :greet do |input| ...
end``. The build reads the sources without running them for the handlers and the capabilities
(``Omnicore::KV`` -> ``omnicore:kv``), then starts the interpreter, loads the SDK and the plugin
(with its vendored pure-Ruby gems) and writes the started interpreter out as the plugin: a
call never parses code that was loaded at build time. One module per job:

- :mod:`~omnicore.toolchains.ruby.glue`: the WAT that makes ruby.wasm an ABI v1 module;
- :mod:`~omnicore.toolchains.ruby.runtime`: the npm package, and the runtime built from it;
- :mod:`~omnicore.toolchains.ruby.snapshot`: the pre-initialized plugin module;
- :mod:`~omnicore.toolchains.ruby.source`: handlers, capabilities, gems and the staged files;
- :mod:`~omnicore.toolchains.ruby.testing`: ``omnicore test`` in the same interpreter, on
  omnicore's one test host.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from string import Template

from omnicore.errors import BuildError
from omnicore.toolchains import UnitTests, locations
from omnicore.toolchains.project import write_templates
from omnicore.toolchains.ruby import runtime, snapshot, source
from omnicore.toolchains.ruby.source import (
    detect,
    handler_descriptions,
    handler_names,
    used_capabilities,
)

__all__ = ["EXTENSIONS", "LANGUAGE", "boot_script", "check", "compile", "detect",
           "handler_descriptions", "handler_names", "scaffold", "unit_tests",
           "used_capabilities"]

LANGUAGE = "ruby"
EXTENSIONS = ("ruby", "rb")
_TEMPLATES = Path(__file__).parent.parent / "scaffolds" / "ruby"


def check() -> str | None:
    """None when the interpreter package and the SDK are there, else what to install."""
    problem = runtime.check()
    if problem:
        return problem
    if not (locations.sdk_dir("ruby") / "lib" / "omnicore.rb").is_file():
        return f"the Ruby SDK is missing at {locations.sdk_dir('ruby')}"
    return None


def boot_script(src: Path, handlers: list[str], namespaces: list[str], then: str = "") -> str:
    """``/omnicore/boot.rb``: the SDK and the plugin loaded, the dispatcher made."""
    gems = [f"/omnicore/gems/{g.name}" for g in source.vendored_gems(src)]
    entry = src.name if src.is_file() else source.ENTRY
    return (f"$LOAD_PATH.unshift(\"/omnicore/sdk\", \"/omnicore/plugin\", *{gems!r})\n"
            "require \"omnicore\"\n"
            f"Omnicore::Host.namespaces = {namespaces!r}.freeze\n"
            f"require \"/omnicore/plugin/{entry if src.is_dir() else source.ENTRY}\"\n"
            f"Omnicore::DISPATCHER = Omnicore::Dispatcher.new({handlers!r})\n"
            f"{then}"
            "GC.start\n")


def compile(src: Path, work: Path) -> bytes:
    """The plugin module: the runtime importing what the plugin uses, pre-initialized."""
    handlers = handler_names(src)
    namespaces = used_capabilities(src)
    stage = work / "stage"
    source.stage(src, locations.sdk_dir("ruby"), stage, boot_script(src, handlers, namespaces))
    try:
        return snapshot.snapshot(stage, lambda: runtime.runtime_for(frozenset(namespaces)),
                                 handlers)
    except BuildError as exc:
        raise BuildError(f"{src.name}: {exc}", plugin=src.stem, toolchain=LANGUAGE) from None


def scaffold(dest: Path, name: str, lang: str) -> None:
    """A Ruby plugin project that builds as is."""
    if lang not in EXTENSIONS:
        raise BuildError(f"the Ruby toolchain does not scaffold {lang!r}")
    write_templates(_TEMPLATES.rglob("*.tmpl"), _TEMPLATES, dest,
                    lambda text: Template(text).substitute(name=name))


def unit_tests(src: Path) -> UnitTests:
    """The project's ``test/*_test.rb`` run in the same interpreter, against the test host
    (:mod:`omnicore.toolchains.ruby.testing`)."""
    return UnitTests([sys.executable, "-m", "omnicore.toolchains.ruby.testing", str(src)],
                     dict(os.environ), src)
