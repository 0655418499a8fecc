"""The Debian crate packages the set-up declares are enough for every Rust plugin, whatever else
this machine happens to have installed.

The proof: a cargo directory source holding only the crates of the declared packages and their
dependency closure (files found with ``dpkg -L``), against which each crate graph must resolve
offline. A machine that once installed an extra crate cannot make this pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from omnicore.toolchains import debian_crates

ROOT = Path(__file__).parents[2]
REGISTRY = Path("/usr/share/cargo/registry")
# What scripts/setup-toolchains.sh reads the crates from.
DECLARED_ROOTS = [ROOT / "plugins", ROOT / "sdk" / "rust",
                  ROOT / "host" / "omnicore" / "toolchains" / "scaffolds" / "rust"]
RUST_PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/rust/Cargo.toml"))


def closure(packages: list[str]) -> set[str]:
    """Every package the given ones depend on, transitively (virtual ones resolved to their
    providers by apt), by the archive's metadata rather than what is installed."""
    out = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
         "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *packages],
        capture_output=True, text=True, check=True).stdout
    return {line.strip() for line in out.splitlines()
            if line and not line.startswith((" ", "<"))}


def crate_dirs(packages: set[str]) -> set[Path]:
    """The ``/usr/share/cargo/registry/<crate>-<version>`` folders those packages install."""
    dirs: set[Path] = set()
    for pkg in packages:
        if not pkg.startswith("librust-"):
            continue
        proc = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            path = Path(line)
            if path.parent == REGISTRY:
                dirs.add(path)
    return dirs


def resolve(plugin: Path, packages: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """Resolve ``plugin``'s crate graph offline against only ``packages``' crates."""
    source = tmp / "source"
    source.mkdir()
    for crate in crate_dirs(closure(packages)):
        (source / crate.name).symlink_to(crate)
    home = tmp / "cargo-home"
    home.mkdir()
    config = ['source.crates-io.replace-with="only-declared"',
              f'source.only-declared.directory="{source}"', "net.offline=true"]
    cmd = ["/usr/bin/cargo", "metadata", "--format-version", "1", "--offline",
           "--manifest-path", str(plugin / "Cargo.toml"),
           *[arg for c in config for arg in ("--config", c)]]
    env = {"PATH": "/usr/bin:/bin", "CARGO_HOME": str(home), "HOME": str(tmp)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                          cwd=tmp)


@pytest.fixture(scope="module")
def declared() -> list[str]:
    assert shutil.which("apt-cache") and REGISTRY.is_dir(), \
        "Debian's cargo registry is missing: run scripts/setup-toolchains.sh"
    return debian_crates.packages_for(DECLARED_ROOTS)


def test_every_rust_plugin_is_checked() -> None:
    assert {p.parent.name for p in RUST_PLUGINS} >= {"greeter", "counter", "textstats"}


@pytest.mark.parametrize("plugin", RUST_PLUGINS, ids=lambda p: p.parent.name)
def test_declared_packages_alone_resolve_the_crate_graph(
        plugin: Path, declared: list[str], tmp_path: Path) -> None:
    proc = resolve(plugin, declared, tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_a_missing_feature_package_is_caught(declared: list[str], tmp_path: Path) -> None:
    # The list that once passed CI by accident: regex without its default features.
    without = [p for p in declared if p != "librust-regex+default-dev"]
    proc = resolve(ROOT / "plugins" / "textstats" / "rust", without, tmp_path)
    assert proc.returncode != 0
    assert re.search(r"no matching package named `(aho-corasick|memchr)`", proc.stderr), \
        proc.stderr


def test_features_and_defaults_become_their_own_packages() -> None:
    text = """
[dependencies]
omnicore-sdk = { path = "../sdk", features = ["json"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
tiny = { version = "0.3", default-features = false, features = ["std"] }
[target.'cfg(unix)'.dependencies]
regex = "1"
"""
    assert debian_crates.packages_for_manifest(text) == [
        "librust-serde-dev", "librust-serde+default-dev", "librust-serde+derive-dev",
        "librust-serde-json-dev", "librust-serde-json+default-dev",
        "librust-tiny-dev", "librust-tiny+std-dev",
        "librust-regex-dev", "librust-regex+default-dev",
    ]


def test_a_build_missing_a_crate_names_the_exact_install(tmp_path: Path) -> None:
    from omnicore.errors import BuildError
    from omnicore.toolchains import rust

    crate = tmp_path / "needs-crate"
    rust.scaffold(crate, "needs-crate", "rust")
    manifest = crate / "Cargo.toml"
    # A crate Debian does not ship under this name: the build must fail and say what to run.
    manifest.write_text(manifest.read_text().replace(
        "[dependencies]\n", '[dependencies]\nnot_a_debian_crate = "1"\n'))
    with pytest.raises(BuildError) as err:
        rust.compile(crate, tmp_path / "work")
    hint = str(err.value).splitlines()[-1]
    assert hint.startswith("hint: builds are offline on Debian's packaged crates; "
                           "apt-get install ")
    assert "librust-not-a-debian-crate-dev librust-not-a-debian-crate+default-dev" in hint
    assert "librust-serde+derive-dev" in hint
