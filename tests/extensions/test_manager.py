from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.core.events import ExtensionFailed, ExtensionLoaded
from omnicore.core.lifecycle import State
from omnicore.modules.health import HealthStatus

MakeApp = Callable[..., OmniApp]


class MyPlugin:
    """The seed's shape."""

    name = "my-plugin"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def register(self, app: Any) -> None:
        self.calls.append(f"register {app.name}")
        app.my_plugin_was_here = True

    def startup(self, app: Any) -> None:
        self.calls.append("startup")

    def shutdown(self) -> None:  # a hook may take fewer arguments than the spec
        self.calls.append("shutdown")

    def capabilities(self, app: Any) -> list[str]:
        return ["cap-a", "cap-b"]


def test_seed_shape_register_and_lifecycle_hooks(make_app: MakeApp) -> None:
    app = make_app()
    loaded: list[ExtensionLoaded] = []
    app.events.subscribe(ExtensionLoaded, loaded.append)
    ext = MyPlugin()
    assert app.extensions.register(ext) is True
    assert ext.calls == ["register test-app"]
    assert app.my_plugin_was_here is True  # type: ignore[attr-defined]
    assert app.extensions.names == ["my-plugin"] and app.extensions.get("my-plugin") is ext
    assert [e.extension for e in loaded] == ["my-plugin"]
    app.start()
    assert ext.calls[-1] == "startup"
    app.stop()
    assert ext.calls[-1] == "shutdown"


def test_capabilities_are_flattened_in_registration_order(make_app: MakeApp) -> None:
    app = make_app()

    class Single:
        name = "single"

        def capabilities(self, app: Any) -> object:
            return "cap-c"

    class Nothing:
        name = "nothing"

        def capabilities(self) -> None:
            return None

    app.extensions.register(MyPlugin)  # a class is instantiated
    app.extensions.register(Single())
    app.extensions.register(Nothing())
    assert app.extensions.capabilities() == ["cap-a", "cap-b", "cap-c"]


def failures_and_events(app: OmniApp) -> list[ExtensionFailed]:
    got: list[ExtensionFailed] = []
    app.events.subscribe(ExtensionFailed, got.append)
    return got


def test_failing_register_is_recorded_and_app_still_starts(make_app: MakeApp) -> None:
    app = make_app()
    events = failures_and_events(app)

    class Broken:
        name = "broken"

        def register(self, app: Any) -> None:
            raise RuntimeError("cannot reach license server")

        def startup(self, app: Any) -> None:
            raise AssertionError("an unregistered extension must not start")

    assert app.extensions.register(Broken()) is False
    assert "broken" not in app.extensions.names
    assert app.extensions.failures["broken"].startswith("register: RuntimeError: cannot reach")
    assert events[0].extension == "broken" and events[0].stage == "register"
    app.start()
    assert app.state is State.RUNNING
    comp = app.health.check().components["extensions"]
    assert comp.status is HealthStatus.DEGRADED and "cannot reach license server" in comp.detail
    assert app.health.check().status is HealthStatus.DEGRADED
    app.stop()


def test_failing_startup_and_shutdown_do_not_stop_others(make_app: MakeApp) -> None:
    app = make_app()
    calls: list[str] = []

    class Bad:
        name = "bad"

        def startup(self) -> None:
            raise ValueError("no")

        def shutdown(self) -> None:
            raise ValueError("nope")

    class Good:
        name = "good"

        def startup(self) -> None:
            calls.append("good startup")

        def shutdown(self) -> None:
            calls.append("good shutdown")

    app.extensions.register(Bad())
    app.extensions.register(Good())
    app.start()
    assert calls == ["good startup"]
    assert app.extensions.failures["bad"] == "startup: ValueError: no"
    app.stop()
    assert calls == ["good startup", "good shutdown"]
    assert app.extensions.failures["bad"] == "shutdown: ValueError: nope"


def test_bad_hook_signature_and_duplicates_refused(make_app: MakeApp) -> None:
    app = make_app()

    class WrongArgs:
        name = "wrong"

        def register(self, registry: Any) -> None:
            pass

    assert app.extensions.register(WrongArgs()) is False
    assert "wrong" in app.extensions.failures
    assert app.extensions.register(MyPlugin()) is True
    assert app.extensions.register(MyPlugin()) is False
    assert "already registered" in app.extensions.failures["my-plugin"]


def test_builtin_by_dotted_name_import_failure(make_app: MakeApp) -> None:
    app = make_app(builtin_extensions=["omnicore.does_not_exist"])
    assert app.extensions.failures["omnicore.does_not_exist"].startswith(
        "import: ModuleNotFoundError")


@pytest.fixture
def dist_dir(tmp_path: Path) -> Iterator[Path]:
    """A real installed distribution on sys.path, advertising omnicore.extensions entry points."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "good_ext.py").write_text(textwrap.dedent("""
        class MyPlugin:
            name = "my-plugin"
            def register(self, app):
                app.good_ext_registered = True
    """))
    (site / "raising_ext.py").write_text("raise ImportError('missing native lib')\n")
    (site / "bad_register_ext.py").write_text(textwrap.dedent("""
        def register(app):
            raise KeyError("no such table")
    """))
    info = site / "omni_test_exts-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: omni-test-exts\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[omnicore.extensions]\n"
        "good = good_ext:MyPlugin\n"
        "raising = raising_ext\n"
        "badreg = bad_register_ext\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))
    for mod in ("good_ext", "raising_ext", "bad_register_ext"):
        sys.modules.pop(mod, None)
    importlib.invalidate_caches()


def test_entry_points_loaded_at_start(make_app: MakeApp, dist_dir: Path) -> None:
    app = make_app(entry_points=True)
    events = failures_and_events(app)
    assert "my-plugin" not in app.extensions.names  # not before start
    app.start()
    assert app.state is State.RUNNING
    assert "my-plugin" in app.extensions.names
    assert app.good_ext_registered is True  # type: ignore[attr-defined]
    assert app.extensions.failures["raising"] == "import: ImportError: missing native lib"
    assert app.extensions.failures["badreg"].startswith("register: KeyError")
    assert {e.extension for e in events} == {"raising", "badreg"}
    assert app.health.check().status is HealthStatus.DEGRADED
    assert app.extensions.load_entry_points() == 0  # once per app
    app.stop()


def test_the_old_entry_point_group_still_loads_with_a_warning(
        make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site = tmp_path / "oldsite"
    site.mkdir()
    (site / "old_ext.py").write_text("def register(app):\n    app.old_ext_registered = True\n")
    info = site / "omni_old_ext-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: omni-old-ext\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[omnicore.plugins]\nold = old_ext\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        app = make_app(entry_points=True)
        with caplog.at_level("WARNING"):
            assert app.extensions.load_entry_points() == 1
        assert app.old_ext_registered is True  # type: ignore[attr-defined]
        assert "deprecated entry point group 'omnicore.plugins'" in caplog.text
        assert "'omnicore.extensions'" in caplog.text
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("old_ext", None)
        importlib.invalidate_caches()
