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
:mod:`~omnicore.cli.workflows` their own groups. All commands are registered here. Heavy
imports happen inside the commands, so ``omnicore --help`` stays fast.
"""

from omnicore.cli import (
    app,
    backup,
    bridges,
    build,
    catalog,
    data,
    dev,
    env,
    execute,
    logs,
    mcp,
    migrate,
    oci,
    plugin_group,
    plugins,
    secrets,
    settings,
    test,
    users,
    vectors,
    workflows,
)
from omnicore.cli.main import main, new

__all__ = ["main"]

for command in (plugins.inspect, plugins.call, logs.logs, bridges.bridges, mcp.mcp,
                migrate.migrate,
                build.build_command, build.precompile_command, dev.dev_command,
                test.test_command, env.env_command, execute.exec_command):
    main.add_command(command)
new.add_command(build.new_plugin_command)
# `app`, `backup` (backup, restore), `data` (kv, jobs), `secrets`, `settings`, `users`,
# `vectors` and `workflows` register their commands on `main` when imported; `catalog` and
# `oci` theirs on `omnicore plugins` (plugin_group).
del (app, backup, catalog, command, data, oci, plugin_group, secrets, settings, users, vectors,
     workflows)
