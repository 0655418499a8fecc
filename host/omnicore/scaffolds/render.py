"""Copy a scaffold into a new directory, filling in its templates' ``$name`` placeholders."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from string import Template

from omnicore.errors import OmniError

__all__ = ["scaffold_app"]

# Package data cannot ship dotfiles reliably; they are stored without the dot.
_RENAMES = {"gitignore": ".gitignore"}


def _copy(src: Traversable, dest: Path, values: dict[str, str], out: list[Path]) -> None:
    for item in src.iterdir():
        if item.name in ("__pycache__", "__init__.py"):
            continue
        target = dest / _RENAMES.get(item.name, item.name)
        if item.is_dir():
            target.mkdir(exist_ok=True)
            _copy(item, target, values, out)
        else:
            target.write_text(Template(item.read_text(encoding="utf-8")).safe_substitute(values),
                              encoding="utf-8")
            out.append(target)


def scaffold_app(appdir: Path, name: str | None = None) -> list[Path]:
    """Create ``appdir`` with omnicore.yaml, plugins/, README; refuse a non-empty folder."""
    if appdir.exists() and (not appdir.is_dir() or any(appdir.iterdir())):
        raise OmniError(f"{appdir} already exists and is not an empty folder; "
                        "choose a new path")
    app_name = name or appdir.resolve().name
    appdir.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    _copy(resources.files("omnicore.scaffolds") / "app", appdir, {"name": app_name}, out)
    return out
