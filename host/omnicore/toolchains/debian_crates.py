"""Which Debian packages carry the crates a Rust plugin depends on.

Rust plugins build offline on Debian's packaged crates. Debian ships a crate as
``librust-<crate>-dev`` *without* its optional dependencies; each feature that pulls in more
is its own package, ``librust-<crate>+<feature>-dev``, and a dependency with default features
needs ``librust-<crate>+default-dev``. Reading that off each ``Cargo.toml`` (rather than keeping
a hand-written list) means adding a crate to a plugin is enough for the set-up to install it.

Stdlib only: ``scripts/setup-toolchains.sh`` runs this file with the system Python before the
venv exists::

    python3 host/omnicore/toolchains/debian_crates.py plugins sdk/rust ...
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["apt_install_line", "manifests", "packages_for", "packages_for_manifest"]

# Manifest names the set-up reads besides Cargo.toml (the scaffold template is rendered later).
_MANIFEST_NAMES = ("Cargo.toml", "Cargo.toml.tmpl")
_DEP_TABLES = ("dependencies", "build-dependencies")


def _debian_name(crate: str) -> str:
    # Debian package names have no underscores: serde_json -> librust-serde-json-dev.
    return crate.replace("_", "-").lower()


def _dep_packages(crate: str, spec: object) -> list[str]:
    if isinstance(spec, str):
        spec = {"version": spec}
    if not isinstance(spec, dict) or "path" in spec or "git" in spec:
        return []  # a path dependency is source in the tree, not a Debian crate
    crate = str(spec.get("package", crate))
    name = _debian_name(crate)
    out = [f"librust-{name}-dev"]
    if spec.get("default-features", spec.get("default_features", True)):
        out.append(f"librust-{name}+default-dev")
    out += [f"librust-{name}+{_debian_name(f)}-dev" for f in spec.get("features", ())]
    return out


def packages_for_manifest(text: str) -> list[str]:
    """The Debian packages for one manifest's registry dependencies (optional ones included:
    a feature of the crate may turn them on), in a stable order without duplicates."""
    # A scaffold template's {{placeholders}} become a string so that it parses as TOML.
    doc = tomllib.loads(re.sub(r'"?\{\{\w+\}\}"?', '"x"', text))
    tables: list[dict[str, object]] = [doc.get(t, {}) for t in _DEP_TABLES]
    for target in doc.get("target", {}).values():
        tables += [target.get(t, {}) for t in _DEP_TABLES]
    seen: dict[str, None] = {}
    for table in tables:
        for crate, spec in table.items():
            for pkg in _dep_packages(crate, spec):
                seen.setdefault(pkg, None)
    return list(seen)


def manifests(roots: Iterable[Path]) -> list[Path]:
    """Every Rust manifest under the given folders (or the files themselves)."""
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
            continue
        for name in _MANIFEST_NAMES:
            found += [p for p in sorted(root.rglob(name))
                      if "target" not in p.parts and "node_modules" not in p.parts]
    return found


def packages_for(roots: Iterable[Path]) -> list[str]:
    """The union of :func:`packages_for_manifest` over every manifest under ``roots``."""
    seen: dict[str, None] = {}
    for path in manifests(roots):
        for pkg in packages_for_manifest(path.read_text(encoding="utf-8")):
            seen.setdefault(pkg, None)
    return sorted(seen)


def apt_install_line(manifest: Path) -> str:
    """The one command that installs every Debian crate ``manifest`` needs."""
    pkgs = packages_for_manifest(manifest.read_text(encoding="utf-8"))
    return "apt-get install " + " ".join(pkgs) if pkgs else ""


if __name__ == "__main__":
    print("\n".join(packages_for(Path(a) for a in sys.argv[1:])))
