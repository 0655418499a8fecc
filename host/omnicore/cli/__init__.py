"""The ``omnicore`` command: one module per command group.

:mod:`~omnicore.cli.main` is the click group (every error becomes one ``Error:`` line and
exit code 1; ``--debug`` shows the traceback), :mod:`~omnicore.cli.app` the app commands
(``new APPDIR``, ``run``, ``config show``, ``info``), :mod:`~omnicore.cli.plugins` the plugin
commands (``inspect``, ``call``), :mod:`~omnicore.cli.build` the author's commands
(``build``, ``new plugin``), :mod:`~omnicore.cli.data` the durable state (``kv``,
``tasks``). Heavy imports happen inside the commands, so ``omnicore --help``
stays fast.
"""

from omnicore.cli import app, build, data, plugins, secrets, users, vectors
from omnicore.cli.main import main, new

__all__ = ["main"]

main.add_command(plugins.inspect)
main.add_command(plugins.call)
main.add_command(build.build_command)
new.add_command(build.new_plugin_command)
# `app`, `data` (kv, tasks), `secrets`, `users` and `vectors` register their commands on
# `main` when imported.
del app, data, secrets, users, vectors
