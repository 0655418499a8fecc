"""What shapes a build besides the plugin's sources: the toolchain's code and its SDK. A
changed toolchain rebuilds every plugin of its language (``omnicore build`` skips the rest)."""

from __future__ import annotations

from pathlib import Path

from omnicore.toolchains import _source_digest, _toolchain_digest, js, rust


def test_every_module_of_a_language_package_shapes_its_builds() -> None:
    # js/ is a package: an edit to its rewriter or its runtime build must rebuild JS plugins,
    # not only an edit to its __init__.py.
    package = Path(str(js.__file__)).parent
    assert {p.name for p in package.glob("*.py")} >= {"__init__.py", "plugin.py", "rewrite.py"}
    assert _toolchain_digest("js").startswith(_source_digest(package))
    assert _source_digest(package) != _source_digest(package / "__init__.py")


def test_a_single_module_language_is_digested_as_that_file() -> None:
    assert _toolchain_digest("rust").startswith(_source_digest(Path(str(rust.__file__))))


def test_the_manifest_writer_and_a_language_s_helpers_shape_its_builds() -> None:
    from omnicore import toolchains

    here = Path(str(toolchains.__file__)).parent
    for language in ("rust", "go", "c", "js", "python"):
        assert _source_digest(here / "manifest.py") in _toolchain_digest(language), language
    assert _source_digest(here / "pyschema.py") in _toolchain_digest("python")


def test_a_package_language_is_digested_with_its_glue_and_sdk() -> None:
    from omnicore.toolchains import locations, ruby

    digest = _toolchain_digest("ruby")
    assert _source_digest(Path(str(ruby.__file__)).parent) in digest
    assert _source_digest(locations.sdk_dir("ruby")) in digest
