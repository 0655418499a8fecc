"""The ``omnicore`` click group and its error handling.

Commands are added to the click group :data:`main` (``@main.command()``); ``new`` is itself
a group whose default command scaffolds an app, so ``omnicore new APPDIR`` and, added by
other modules, ``omnicore new plugin NAME --lang rust`` live side by side. Every
:class:`~omnicore.errors.OmniError` (and any other exception) becomes one ``Error:`` line and
exit code 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import atexit
import gc
import sys
from collections.abc import Callable
from typing import Any

import click

from omnicore import __version__
from omnicore.errors import OmniError

__all__ = ["CONFIG_FILE", "hint", "main", "new"]

CONFIG_FILE = "omnicore.yaml"


def hint(command: str) -> str:
    """``command`` as a printed hint should show it: with the ``--app DIR`` the user gave
    this command, so it works from where they are (a default or ``$OMNICORE_APPDIR`` holds
    for the next command too, and is not repeated)."""
    import shlex

    ctx = click.get_current_context(silent=True)
    if ctx is None or "appdir" not in ctx.params or \
            ctx.get_parameter_source("appdir") is not click.core.ParameterSource.COMMANDLINE:
        return command
    return f"{command} --app {shlex.quote(str(ctx.params['appdir']))}"


class _Group(click.Group):
    """Turns exceptions into one line and a non-zero exit unless ``--debug``. The root
    group's commands are imported when looked up (:data:`lazy_loader`, set by
    :mod:`omnicore.cli`)."""

    #: ``(load(name), load_all())``: what imports a command's module, or every one.
    lazy_loader: tuple[Callable[[str], None], Callable[[], None]] | None = None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if self.lazy_loader is not None:
            self.lazy_loader[0](cmd_name)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        if self.lazy_loader is not None:
            self.lazy_loader[1]()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except BrokenPipeError:
            # `omnicore config show | head`: the reader left; that is not an error.
            sys.stderr.close()
            raise click.exceptions.Exit(0) from None
        except Exception as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            # --debug is an option of `omnicore` itself: name it where it works.
            rerun = f"omnicore --debug {ctx.invoked_subcommand or ''} ...".replace("  ", " ")
            if isinstance(exc, OmniError):
                # One line: a guest's message may carry a stack trace (JS), shown with --debug.
                first, _, rest = str(exc).strip().partition("\n")
                text = first + (f"  ({rerun} for the rest)" if rest.strip() else "")
            else:
                text = " ".join(f"{type(exc).__name__}: {exc}".split()) + \
                    f"  ({rerun} for details)"
            raise click.ClickException(text) from None


class _DefaultGroup(_Group):
    """A group that runs ``default`` when the first argument is not one of its commands."""

    default = "app"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `omnicore new app` alone names a folder called "app", not the subcommand.
        bare_default = args[:1] == [self.default] and len(args) == 1
        if args and (args[0] not in self.commands or bare_default) \
                and args[0] not in ("--help", "-h"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="OMNICORE_DEBUG",
              help="Verbose logs, and tracebacks on errors.")
@click.version_option(__version__, prog_name="omnicore")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """omnicore: run WebAssembly plugins from any language, with capability grants."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if not _frozen_at_exit:
        # The process ends with the command: without this, the interpreter's last collections
        # walk every object the command imported (about 100 ms of an `omnicore call` on a busy
        # machine) for memory the OS frees anyway. atexit runs before those collections.
        atexit.register(gc.freeze)
        _frozen_at_exit.append(True)


_frozen_at_exit: list[bool] = []


@main.group(cls=_DefaultGroup, invoke_without_command=False)
def new() -> None:
    """Create things: `omnicore new APPDIR` scaffolds an app (`new plugin` a plugin project)."""

