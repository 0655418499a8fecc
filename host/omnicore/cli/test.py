"""``omnicore test``: a plugin project's own unit tests, with the toolchain builds use.

Authors' machines drift (Go only inside omnicore's venv, rustup's cargo first on PATH); this
command picks the same rustc/cargo, Go and SDK that ``omnicore build`` uses, so the native
tests of every scaffold and example run the same everywhere.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import click

from omnicore.errors import BuildError

__all__ = ["test_command"]


@click.command("test", context_settings={"ignore_unknown_options": True})
@click.argument("source", type=click.Path(exists=True, path_type=Path), default=Path("."))
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@click.option("--http", "http_request", metavar="'METHOD /PATH?QUERY'", default=None,
              help="Instead of the unit tests: build the project and send this HTTP request to "
                   "its route handler (the route its omnicore.toml proposes for the path, or "
                   "--handler), printing the decoded response.")
@click.option("-H", "--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="With --http: a request header (repeatable).")
@click.option("-d", "--data", default=None, help="With --http: the request body.")
@click.option("--handler", default=None, help="With --http: the handler to call.")
@click.option("--grant", "grant_opts", multiple=True, metavar="CAP[=JSON]",
              help="With --http: grant a capability for the call (repeatable).")
def test_command(source: Path, extra: tuple[str, ...], http_request: str | None,
                 headers: tuple[str, ...], data: str | None, handler: str | None,
                 grant_opts: tuple[str, ...]) -> None:
    """Run the unit tests of the plugin project at SOURCE (or of every project below it).

    Rust: cargo test for wasm32-wasi, each test in a fresh instance on omnicore's test host
    (the host's capability code over in-memory stores); Go: go test ./... for wasip1, each
    test on the same test host; Zig: zig test for wasm32-wasi, AssemblyScript: the
    *.test.ts, and Kotlin: the @Test functions of tests/*.kt, each test alone, on the same
    test host; C: tests/*.c on omnicore_test.h,
    built with the plugin for wasm32-wasi and run on the same test host; Python: pytest with
    omnicore_plugin.testing, on the same host's code in-process; JS/TS: node --test on
    *.test.js/*.test.ts with the JS SDK's in-memory test host; Ruby: its tests inside the
    plugin's interpreter with Omnicore::TestHost.
    Python and JS/TS projects have their SQL statements checked first, as `omnicore build`
    does. EXTRA
    arguments go to that tool (after --, e.g. `omnicore test hello -- -run TestGreet`). The
    exit code is the tests'.
    """
    from omnicore.toolchains import discover, unit_tests

    projects = list(discover(source))
    if not projects:
        raise BuildError(f"no plugin projects found below {source}")
    if http_request is not None:
        if len(projects) != 1:
            raise click.UsageError(f"--http sends a request to one project; {source} holds "
                                   f"{len(projects)}")
        from omnicore.cli.http_test import send

        send(projects[0], http_request, headers, data, handler, grant_opts)
        return
    if headers or data is not None or handler is not None or grant_opts:
        raise click.UsageError("-H, -d, --handler and --grant go with --http")
    failed = []
    for project in projects:
        try:
            run = unit_tests(project)
        except BuildError as exc:
            # Said whole (a refused statement's lines and what to do), and one project that
            # cannot be tested does not hide the others' results.
            click.echo(f"{project}: {exc}", err=True)
            failed.append(project)
            continue
        click.echo(f"$ {shlex.join([*run.argv, *extra])}", err=True)
        sys.stdout.flush()
        code = subprocess.run([*run.argv, *extra], env=run.env, cwd=run.cwd,
                              check=False).returncode
        if code != 0:
            failed.append(project)
    if len(projects) > 1:
        click.echo(f"tests passed in {len(projects) - len(failed)} of {len(projects)} projects",
                   err=True)
    if failed:
        raise click.exceptions.Exit(1)
