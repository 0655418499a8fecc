"""The web console and REST API of a running host (``omnicore run``, port 8470).

::

    module.py      ConsoleModule: Hypercorn on the app's loop, console.json for the CLI
    server.py      the Starlette app: routes, error handlers, security headers
    api.py         /api/v1 (openapi.py documents it)
    pages.py       server-rendered pages (the top-level web/: templates, static)
    auth.py        sessions, API tokens, CSRF; users.py the accounts; throttle.py sign-in
    operations.py  upload, delete, settings into sidecars, on top of app.plugins
    live.py        the live feed of logs and events (SSE)
    workflows.py   workflows: list, run view, approvals, webhooks (/hooks/PATH)
    secrets.py     secrets: names, set, delete (never a value)
    vectors.py     plugins' vector collections; memory.py their tiered memories, recall
    (the CLI's side, finding a running host and calling it, is omnicore.cli.remote)
"""

from omnicore.console.module import ConsoleModule
from omnicore.console.server import create_app
from omnicore.console.state import ConsoleState

__all__ = ["ConsoleModule", "ConsoleState", "create_app"]
