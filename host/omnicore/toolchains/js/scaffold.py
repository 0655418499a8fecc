"""A new JS or TypeScript plugin project that builds as is (``omnicore new plugin``)."""

from __future__ import annotations

from pathlib import Path
from string import Template

from omnicore.errors import BuildError
from omnicore.toolchains import check_plugin_name, locations
from omnicore.toolchains.project import write_templates

__all__ = ["EXTENSIONS", "scaffold"]

#: What ``omnicore new plugin --lang`` accepts for this toolchain.
EXTENSIONS = ("js", "ts")

_SCAFFOLDS = Path(__file__).parents[1] / "scaffolds"


def scaffold(dest: Path, name: str, lang: str) -> None:
    """Create a JS (``lang="js"``) or TypeScript (``"ts"``) plugin project that builds as is."""
    if lang not in EXTENSIONS:
        raise BuildError(f"the JS toolchain does not scaffold {lang!r}")
    check_plugin_name(name)
    dest.mkdir(parents=True, exist_ok=True)
    values = {"name": name, "sdk_types": str(locations.sdk_dir("js") / "index.d.ts")}
    write_templates((_SCAFFOLDS / lang).glob("*.tmpl"), _SCAFFOLDS / lang, dest,
                    lambda text: Template(text).substitute(values))

