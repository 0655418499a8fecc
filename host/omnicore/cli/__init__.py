"""The ``omnicore`` command: one module per command group.

:mod:`~omnicore.cli.main` is the click group (every error becomes one ``Error:`` line and
exit code 1; ``--debug`` shows the traceback), :mod:`~omnicore.cli.app` the app commands
(``new APPDIR``, ``run``, ``config show``, ``info``), :mod:`~omnicore.cli.plugins` the plugin
commands (``inspect``, ``call``), :mod:`~omnicore.cli.build` the author's commands
(``build``, ``new plugin``). Heavy imports happen inside the commands, so ``omnicore --help``
stays fast.
"""

from omnicore.cli import app, build, plugins
from omnicore.cli.main import main, new

__all__ = ["main"]

main.add_command(plugins.inspect)
main.add_command(plugins.call)
main.add_command(build.build_command)
new.add_command(build.new_plugin_command)
# `app` registers its commands on `main` and `new` when imported.
del app
