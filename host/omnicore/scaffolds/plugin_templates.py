"""The templates ``omnicore new plugin --template NAME`` lays over a language's own scaffold
(toolchains/scaffolds/, the ``greeter``): ``http`` makes a route handler (specs/http-routes.md)
``hello`` answering ``GET /NAME/hello/{name}``, its route proposed in ``omnicore.toml`` and the
operator's mapping in ``routes.yaml`` (an ``omnicore.yaml`` snippet)."""

from __future__ import annotations

from pathlib import Path
from string import Template

from omnicore.errors import BuildError

__all__ = ["PLUGIN_TEMPLATES", "apply_plugin_template"]

_HERE = Path(__file__).parent

#: template -> language -> (project file -> template file, the scaffold's files it removes).
_FILES: dict[str, dict[str, tuple[dict[str, str], tuple[str, ...]]]] = {
    "http": {
        "rust": ({"src/lib.rs": "rust/lib.rs.tmpl", "omnicore.toml": "rust/omnicore.toml.tmpl"},
                 ()),
        "go": ({"main.go": "go/main.go.tmpl", "main_test.go": "go/main_test.go.tmpl",
                "omnicore.toml": "go/omnicore.toml.tmpl"}, ()),
        "js": ({"plugin.js": "js/plugin.js.tmpl", "omnicore.toml": "js/omnicore.toml.tmpl"},
               ("plugin.test.js",)),
    },
}

#: The templates beside the default ``greeter``.
PLUGIN_TEMPLATES: tuple[str, ...] = tuple(_FILES)


def apply_plugin_template(dest: Path, name: str, lang: str, template: str) -> None:
    """Lay ``template`` over the scaffold just made at ``dest``."""
    langs = _FILES.get(template)
    if langs is None:
        raise BuildError(f"unknown plugin template {template!r}; choose one of greeter, "
                         f"{', '.join(PLUGIN_TEMPLATES)}")
    if lang not in langs:
        raise BuildError(f"the {template} template is made for {', '.join(langs)}, "
                         f"not {lang}")
    files, removed = langs[lang]
    base = _HERE / template
    values = {"name": name}
    for rel, source in {**files, "routes.yaml": "routes.yaml.tmpl"}.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template((base / source).read_text(encoding="utf-8"))
                        .substitute(values), encoding="utf-8")
    for rel in removed:
        (dest / rel).unlink(missing_ok=True)
