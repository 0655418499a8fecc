"""The web console and REST API of a running host (``omnicore run``, port 8470).

Routes live per feature, each module with its API and its pages; every one of them uses
:mod:`~omnicore.console.base` around a request and :mod:`~omnicore.console.render` for a
page (datasette's ``views/`` and ``views/base.py``)::

    module.py      ConsoleModule: Hypercorn on the app's loop, console.json for the CLI
    sampler.py     ChartSampler: the module feeding the charts' history (series.py)
    server.py      the Starlette app: the features' routes, error handlers, security headers
    base.py        request helpers: who asks, paging, filters, the API's error shape, actor
    render.py      the pages: templates (the top-level web/), notices, forms
    errors.py bodies.py responses.py guard.py   error shape, body limits, JSON, Host/origin
    auth.py        sessions, API tokens, CSRF (the rules: omnicore.accounts); throttle.py
    overview.py    /api/v1/info, health, settings, me; the Overview and Settings pages
    plugins/       plugins: REST (rest.py), pages (page.py), operations.py, invoke_form.py
    feed.py        the live feed and figures (live.py, pulse.py) and the Logs page
    charts.py      the charts drawn (chart_api.py serves them as data)
    jobs.py        jobs and schedules (/jobs; /tasks, the old path, answers too)
    users.py       sign-in, setup link, users and API tokens
    audit.py       the audit log's API and page (recorded by omnicore.accounts.audit)
    kv.py memory.py vectors.py secrets.py events.py instances.py workflows.py
    connectors.py  connectors (HTTP and databases): pools and last errors, never a secret
    (the CLI's side, finding a running host and calling it, is omnicore.cli.remote)
"""

from omnicore.console.module import ConsoleModule
from omnicore.console.server import create_app
from omnicore.console.state import ConsoleState

__all__ = ["ConsoleModule", "ConsoleState", "create_app"]
