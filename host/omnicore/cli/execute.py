"""``omnicore exec FILE [-- ARGS...]``: run a WASI command module once, as ``wasmtime run``.

The module runs under omnicore's sandbox (``sandbox.command``): its own WASI preview 1, the
``fs`` grant's rules for ``--dir``, a deadline and a memory limit. Its stdout and stderr are
this process's; its exit code is this process's (specs/host.md "Running a command"):

* 0-125: the guest's own (``proc_exit(n)``, or 0 when ``_start`` returns);
* 126: omnicore could not run it (not a command module, a bad ``--dir``): one ``Error:`` line;
* 134: it trapped or hit a limit (memory, tables), as ``wasmtime run`` reports a trap;
* 142: it passed its ``--timeout``.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import click

from omnicore.errors import DeadlineExceeded, OmniError, PluginCallError

__all__ = ["EXIT_CANNOT_RUN", "EXIT_DEADLINE", "EXIT_TRAP", "exec_command", "parse_dir",
           "parse_size"]

EXIT_CANNOT_RUN = 126
#: 128 + SIGABRT, what ``wasmtime run`` exits with on a trap.
EXIT_TRAP = 134
#: 128 + SIGALRM: the run's time was up.
EXIT_DEADLINE = 142

#: Where exec's limits come from, for the error that names one.
_ORIGINS = {"timeout_ms": "--timeout", "max_memory_bytes": "--max-memory"}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """``65536``, ``64M``, ``64MiB``, ``1g``: bytes (units are powers of 1024)."""
    m = _SIZE.match(text)
    if m is None:
        raise click.BadParameter(f"expected a size like 64MiB or 1048576, got {text!r}",
                                 param_hint="--max-memory")
    unit = (m.group(2) or "").lower()[:1]
    return int(m.group(1)) * _UNITS[unit]


def parse_dir(text: str) -> dict[str, object]:
    """``[ro:]HOST[::GUEST]`` as an ``fs`` grant entry (``sandbox.wasi_fd.parse_dirs``):
    writable unless ``ro:``; the guest sees HOST's own path when GUEST is not given."""
    writable = True
    if text.startswith("ro:"):
        text, writable = text[3:], False
    host, sep, guest = text.partition("::")
    if not host or (sep and not guest):
        raise click.BadParameter(f"expected [ro:]HOST[::GUEST], got {text!r}",
                                 param_hint="--dir")
    return {"path": host, "guest": guest or host, "write": writable}


@click.command("exec", context_settings={"ignore_unknown_options": True,
                                         "allow_interspersed_args": False})
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--env", "env_opts", multiple=True, metavar="K=V",
              help="An environment variable for the guest (repeatable); it sees no others.")
@click.option("--dir", "dir_opts", multiple=True, metavar="[ro:]HOST[::GUEST]",
              help="Give the guest a host directory, as GUEST (default: the same path); "
                   "read-only with ro: (repeatable).")
@click.option("--timeout", type=click.FloatRange(min=0.001), default=60.0, show_default=True,
              metavar="SECONDS", help="Wall-clock deadline of the whole run.")
@click.option("--max-memory", "max_memory", default="64MiB", show_default=True,
              metavar="SIZE", help="Linear memory limit (e.g. 256MiB).")
def exec_command(file: Path, args: tuple[str, ...], env_opts: tuple[str, ...],
                 dir_opts: tuple[str, ...], timeout: float, max_memory: str) -> None:
    """Run FILE, a WASI command module (it exports _start), once.

    ARGS after FILE (or after `--`) are the guest's arguments. Its stdout and stderr are
    passed through; the exit code is the guest's (126: could not run it, 134: it trapped or
    hit a limit, 142: it timed out).
    """
    env: dict[str, str] = {}
    for item in env_opts:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected K=V, got {item!r}", param_hint="--env")
        env[key] = value
    if args[:1] == ("--",):
        args = args[1:]
    dirs = [parse_dir(d) for d in dir_opts]
    memory = parse_size(max_memory)
    sys.exit(_run(file, args, env, dirs, timeout, memory))


def _run(file: Path, args: tuple[str, ...], env: dict[str, str], dirs: list[dict[str, object]],
         timeout: float, memory: int) -> int:
    from omnicore.cli.plugins import user_engine
    from omnicore.sandbox import pluginlog
    from omnicore.sandbox.command import Command, CommandModule, run_command
    from omnicore.sandbox.limits import Limits
    from omnicore.sandbox.wasi_fd import parse_dirs

    # What the sandbox says about the run (a refused path) goes to stderr as it happens.
    logger = logging.getLogger("omnicore.exec")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("omnicore exec: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    try:
        with user_engine() as engine:
            module = CommandModule.load(engine, file)
            command = Command(args=args, env=env, dirs=parse_dirs(dirs, "--dir"),
                              limits=Limits(max_memory_bytes=memory,
                                            timeout_ms=max(1, round(timeout * 1000))),
                              program=str(file))
            log = pluginlog.PluginLog(module.name, logger=logger, min_level="warn")
            sys.stdout.flush()
            try:
                return run_command(engine, module, command, sys.stdout.buffer,
                                   sys.stderr.buffer, log, origins=_ORIGINS)
            finally:
                pluginlog.flush()
    except PluginCallError as exc:
        _error(exc)
        return EXIT_DEADLINE if isinstance(exc, DeadlineExceeded) else EXIT_TRAP
    except OmniError as exc:
        _error(exc)
        return EXIT_CANNOT_RUN


def _error(exc: Exception) -> None:
    first = str(exc).strip().partition("\n")[0]
    click.echo(f"Error: {first}", err=True)
