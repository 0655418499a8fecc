"""``omnicore env``: shell exports that put the plugin toolchains first on PATH.

``eval "$(omnicore env)"`` makes ``go``, ``cargo``, ``rustc`` and ``omnicore`` the ones
``omnicore build`` uses, through a folder of links (``<cache>/bin``), so an SDK README's
``GOOS=wasip1 GOARCH=wasm go test .`` or ``cargo test --target wasm32-wasi`` works in any
shell — however rustup or the venv are set up.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import click

__all__ = ["env_command", "tool_links"]


def tool_links() -> dict[str, Path]:
    """Each tool name and the binary ``omnicore build`` runs for it (those that exist)."""
    from omnicore.toolchains import go, rust
    from omnicore.toolchains.locations import program

    found: dict[str, Path] = {}
    omnicore = program("omnicore")
    if omnicore:
        found["omnicore"] = Path(omnicore)
    go_binary = go._go()
    if go_binary:
        found["go"] = Path(go_binary)
    rustc, cargo = rust._toolchain()
    for name, tool in (("rustc", rustc), ("cargo", cargo),
                       ("rustdoc", str(Path(rustc).with_name("rustdoc")))):
        where = shutil.which(tool)
        if where:
            found[name] = Path(where)
    return found


@click.command("env")
@click.option("--bin-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to put the tool links (default: omnicore's cache dir + /bin).")
def env_command(bin_dir: Path | None) -> None:
    """Print shell exports for the plugin toolchains: eval "$(omnicore env)"."""
    from omnicore.toolchains import locations

    links = bin_dir or locations.cache_dir() / "bin"
    links.mkdir(parents=True, exist_ok=True)
    tools = tool_links()
    for name, target in tools.items():
        link = links / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    click.echo(f"# omnicore toolchains: {', '.join(sorted(tools)) or 'none found'}")
    click.echo(f"export PATH={shlex.quote(str(links))}:\"$PATH\"")
    if "rustc" in tools:
        # cargo runs the rustc/rustdoc these name, whatever else is on PATH.
        click.echo(f"export RUSTC={shlex.quote(str(tools['rustc']))}")
    if "rustdoc" in tools:
        click.echo(f"export RUSTDOC={shlex.quote(str(tools['rustdoc']))}")
    # `cargo test --target wasm32-wasi` runs the tests on omnicore's test host, as
    # `omnicore test` does (omnicore.toolchains.testrunner).
    runner = f"{sys.executable} -m omnicore.toolchains.testrunner"
    click.echo(f"export CARGO_TARGET_WASM32_WASI_RUNNER={shlex.quote(runner)}")
    # So does `GOOS=wasip1 GOARCH=wasm go test`: go runs a wasip1 test binary with the
    # go_wasip1_wasm_exec it finds on PATH.
    go_exec = links / "go_wasip1_wasm_exec"
    go_exec.unlink(missing_ok=True)
    go_exec.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m "
                       'omnicore.toolchains.testrunner "$@"\n')
    go_exec.chmod(0o755)
    # Go plugins build offline against the SDK's local copy (a replace in go.mod).
    click.echo("export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod")
