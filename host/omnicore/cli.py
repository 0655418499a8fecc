"""The ``omnicore`` command.

Commands are added to the click group :data:`main` (``@main.command()``); ``new`` is itself
a group whose default command scaffolds an app, so ``omnicore new APPDIR`` and, added by
other modules, ``omnicore new plugin NAME --lang rust`` live side by side. Every
:class:`~omnicore.errors.OmniError` (and any other exception) becomes one ``Error:`` line and
exit code 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from omnicore import __version__
from omnicore.errors import ConfigError, OmniError

__all__ = ["config", "main", "new"]

CONFIG_FILE = "omnicore.yaml"


class _Group(click.Group):
    """Turns exceptions into one line and a non-zero exit unless ``--debug``."""

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
            if isinstance(exc, OmniError):
                # One line: a guest's message may carry a stack trace (JS), shown with --debug.
                first, _, rest = str(exc).strip().partition("\n")
                text = first + ("  (--debug for the rest)" if rest.strip() else "")
            else:
                text = " ".join(f"{type(exc).__name__}: {exc}".split()) + "  (--debug for details)"
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


def _config_path(appdir: Path) -> Path:
    path = appdir / CONFIG_FILE if appdir.is_dir() or not appdir.suffix else appdir
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} in {appdir}; create an app with "
                          f"`omnicore new {appdir}`", source=str(path))
    return path


@main.group(cls=_DefaultGroup, invoke_without_command=False)
def new() -> None:
    """Create things: `omnicore new APPDIR` scaffolds an app (`new plugin` a plugin project)."""


@new.command("app")
@click.argument("appdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="App name (default: the folder's name).")
def new_app(appdir: Path, name: str | None) -> None:
    """Scaffold an app in APPDIR: omnicore.yaml, plugins/, README."""
    from omnicore.templates.scaffold import scaffold_app

    files = scaffold_app(appdir, name)
    click.echo(f"created {appdir}/ ({len(files)} files)")
    click.echo(f"next: cd {appdir} && omnicore run")


@main.command()
@click.argument("appdir", default=".", envvar="OMNICORE_APPDIR", type=click.Path(path_type=Path))
@click.pass_context
def run(ctx: click.Context, appdir: Path) -> None:
    """Run the app in APPDIR (default: $OMNICORE_APPDIR or here) until SIGINT/SIGTERM.

    Logs the runtime id at start; on SIGINT/SIGTERM, running tasks get shutdown_grace_s to
    finish, modules stop in reverse order, and the exit code is 0.
    """
    from omnicore.config import load_config
    from omnicore.core.app import OmniApp
    from omnicore.logging import configure

    cfg = load_config(_config_path(appdir))
    debug = ctx.obj.get("debug", False)
    configure("debug" if debug else cfg.log.level, cfg.log.format)
    app = OmniApp(config=cfg)
    app.log.info("omnicore %s: app %s, runtime id %s, data %s", __version__, app.name,
                 app.runtime_id, app.data_dir)
    app.run()


@main.group()
def config() -> None:
    """Inspect configuration."""


@config.command("show")
@click.argument("appdir", default=".", envvar="OMNICORE_APPDIR", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {key: {value, source}}.")
@click.option("--show-secrets", is_flag=True, help="Do not mask secret values.")
def config_show(appdir: Path, as_json: bool, show_secrets: bool) -> None:
    """Print the effective config of APPDIR with the source of each value."""
    from omnicore.config import load_config, render_config

    path = appdir / CONFIG_FILE if appdir.is_dir() else appdir
    if not path.is_file():
        click.echo(f"note: no {path}; showing defaults and environment only", err=True)
    cfg = load_config(path if path.is_file() else None)
    rows = render_config(cfg, mask=not show_secrets)
    if as_json:
        click.echo(json.dumps({k: {"value": v, "source": s} for k, v, s in rows}, indent=2))
        return
    width = max(len(k) for k, _, _ in rows)
    vwidth = min(40, max(len(v) for _, v, _ in rows))
    for key, value, source in rows:
        click.echo(f"{key:<{width}}  {value:<{vwidth}}  # {source}")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(as_json: bool) -> None:
    """Print this host's identity, environment and versions."""
    from omnicore.adapters import detect
    from omnicore.core.identity import hostname, new_runtime_id

    env = detect()
    doc = {
        "omnicore": __version__,
        "runtime_id": new_runtime_id(),
        "hostname": hostname(),
        "pid": os.getpid(),
        "environment": env.kind,
        "environment_reasons": list(env.reasons),
        "provider": env.provider,
        "cpus": env.cpus,
        "defaults": env.defaults,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "executable": sys.executable,
        "wasmtime": _version("wasmtime"),
        "pluggy": _version("pluggy"),
        "pydantic": _version("pydantic"),
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"omnicore {__version__}  (runtime id {doc['runtime_id']}, for this process)")
    click.echo(f"host        {doc['hostname']} pid {doc['pid']}")
    click.echo(f"environment {env.describe()}")
    d = env.defaults
    click.echo(f"defaults    bind {d['console']['host']}, log {d['log']['format']}, "
               f"workers {d['workers']}, data {d['data_dir']}")
    click.echo(f"python      {doc['python']} ({doc['executable']})")
    click.echo(f"platform    {doc['platform']}")
    click.echo(f"engine      wasmtime {doc['wasmtime']}, pluggy {doc['pluggy']}, "
               f"pydantic {doc['pydantic']}")


# Commands other layers contribute. Their modules import heavy dependencies inside the
# commands, so `omnicore --help` stays fast.
from omnicore.sandbox.cli_commands import add_commands as _sandbox_commands  # noqa: E402
from omnicore.toolchains.commands import build_command, new_plugin_command  # noqa: E402

_sandbox_commands(main)  # `inspect` and `call`
main.add_command(build_command)  # `omnicore build`
new.add_command(new_plugin_command)  # `omnicore new plugin NAME --lang X`

if __name__ == "__main__":  # pragma: no cover
    main()
