"""The ``omnicore`` command: one module per command group.

:mod:`~omnicore.cli.main` is the click group (every error becomes one ``Error:`` line and
exit code 1; ``--debug`` shows the traceback), :mod:`~omnicore.cli.app` the app commands
(``new APPDIR``, ``run``, ``config show``, ``info``), :mod:`~omnicore.cli.plugins` the plugin
commands (``inspect``, ``call``), :mod:`~omnicore.cli.execute` a WASI command
module run once (``exec``), :mod:`~omnicore.cli.build` the author's commands
(``build``, ``new plugin``, ``test``, ``env``), :mod:`~omnicore.cli.dev` the author's
build-serve-reload loop (``dev``), :mod:`~omnicore.cli.logs` a running host's
plugin log, :mod:`~omnicore.cli.bridges` its bridges to brokers, :mod:`~omnicore.cli.mcp`
the MCP server over stdio,
:mod:`~omnicore.cli.migrate` the schema's migrations, :mod:`~omnicore.cli.data`
the durable state (``kv``, ``jobs``), :mod:`~omnicore.cli.backup` an embedded app's
``backup`` and ``restore``, :mod:`~omnicore.cli.settings` the operator's plugin
settings, :mod:`~omnicore.cli.secrets`, :mod:`~omnicore.cli.vectors`, :mod:`~omnicore.cli.users` and
:mod:`~omnicore.cli.workflows` their own groups. All commands are registered here, each
module imported when its command is looked up; heavy imports happen inside the commands,
so ``omnicore --help`` stays fast.
"""

import importlib

from omnicore.cli.main import main, new

__all__ = ["main"]

#: Each command's module, imported when the command is looked up (``omnicore --help`` and
#: completion look every one up): a command imports only its own module, not the other 20
#: (an ``omnicore call`` of a bare file spent about a fifth of its time importing them:
#: issue 63). A module named with an attribute holds a command added here; the others add
#: theirs to ``main`` (or ``omnicore plugins``) when imported.
_COMMANDS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "inspect": (("plugins", "inspect"),), "call": (("plugins", "call"),),
    "logs": (("logs", "logs"),), "bridges": (("bridges", "bridges"),),
    "events": (("events", "events"),),
    "mcp": (("mcp", "mcp"),), "migrate": (("migrate", "migrate"),),
    "build": (("build", "build_command"),), "precompile": (("build", "precompile_command"),),
    "dev": (("dev", "dev_command"),), "test": (("test", "test_command"),),
    "env": (("env", "env_command"),), "exec": (("execute", "exec_command"),),
    "run": (("app", None),), "config": (("app", None),), "info": (("app", None),),
    # `new APPDIR` is app's, `new plugin` build's.
    "new": (("app", None), ("build", None)),
    "backup": (("backup", None),), "restore": (("backup", None),),
    "kv": (("data", None),), "jobs": (("data", None),), "tasks": (("data", None),),
    "secrets": (("secrets", None),), "settings": (("settings", None),),
    "users": (("users", None),), "vectors": (("vectors", None),),
    "workflows": (("workflows", None),),
    "plugins": (("plugin_group", None), ("catalog", None), ("oci", None)),
}
_loaded: set[tuple[str, str | None]] = set()


def _load(name: str) -> None:
    """Import what command ``name`` needs (once)."""
    for module, attr in _COMMANDS.get(name, ()):
        if (module, attr) in _loaded:
            continue
        found = importlib.import_module(f"omnicore.cli.{module}")
        if attr is not None:
            main.add_command(getattr(found, attr))
        elif module == "build":
            new.add_command(found.new_plugin_command)
        _loaded.add((module, attr))


def _load_all() -> None:
    for name in _COMMANDS:
        _load(name)


main.lazy_loader = (_load, _load_all)
