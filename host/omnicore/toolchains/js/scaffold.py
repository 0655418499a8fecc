"""A new JS or TypeScript plugin project that builds as is (``omnicore new plugin``)."""

from __future__ import annotations

from pathlib import Path
from string import Template

from omnicore.errors import BuildError
from omnicore.toolchains import check_plugin_name, locations

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
    for template in sorted((_SCAFFOLDS / lang).glob("*.tmpl")):
        text = Template(template.read_text(encoding="utf-8")).substitute(values)
        # Package data keeps no dotfiles reliably: gitignore.tmpl becomes .gitignore.
        target = template.name.removesuffix(".tmpl").replace("gitignore", ".gitignore")
        (dest / target).write_text(text, encoding="utf-8")

