"""Apps with real example plugins (built from the SDK sources) and a workflows folder."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore import OmniApp

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ("greeter-rust", "counter-rust", "textstats-rust")
GRANTS = {"greeter-rust": ["config"], "counter-rust": ["config", "kv"],
          "textstats-rust": ["config"]}


@pytest.fixture(scope="session")
def built_plugins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The Rust examples, built from source by the real toolchain if `omnicore build` has not."""
    found: dict[str, Path] = {}
    for name in PLUGINS:
        path = ROOT / "build" / "plugins" / f"{name}.wasm"
        if not path.is_file():
            from omnicore.toolchains import build

            kind, lang = name.split("-")
            path = build(ROOT / "plugins" / kind / lang, tmp_path_factory.mktemp(name))
        found[name] = path
    return found


def app_dir(tmp: Path, plugins: dict[str, Path], workflows: dict[str, str],
            extra: str = "") -> Path:
    """An app folder: omnicore.yaml, plugins/ and workflows/ (``name -> YAML text``)."""
    (tmp / "plugins").mkdir(parents=True, exist_ok=True)
    (tmp / "workflows").mkdir(exist_ok=True)
    for name, path in plugins.items():
        shutil.copy(path, tmp / "plugins" / f"{name}.wasm")
    for name, text in workflows.items():
        (tmp / "workflows" / name).write_text(textwrap.dedent(text))
    grants = "".join(f"  {p}: {{grants: {GRANTS[p]}}}\n" for p in plugins)
    (tmp / "omnicore.yaml").write_text(
        "name: wf-test\ndata_dir: data\nplugins_dir: plugins\nconsole: {enabled: false}\n"
        "workflows: {dir: workflows, poll_s: 0.1, lease_s: 2}\n"
        f"plugins:\n{grants}" + textwrap.dedent(extra))
    return tmp


@pytest.fixture
def wf_app(tmp_path: Path, built_plugins: dict[str, Path]
           ) -> Iterator[Callable[..., OmniApp]]:
    """``wf_app({"a.yaml": TEXT}, extra=YAML, **overrides)`` → a started app."""
    apps: list[OmniApp] = []

    def start(workflows: dict[str, str] | None = None, extra: str = "",
              overrides: dict[str, Any] | None = None) -> OmniApp:
        folder = app_dir(tmp_path / "app", built_plugins, workflows or {}, extra)
        app = OmniApp(config_path=folder / "omnicore.yaml", environ={}, entry_points=False,
                      overrides=overrides)
        app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        if app.state.value == "running":
            app.stop()
