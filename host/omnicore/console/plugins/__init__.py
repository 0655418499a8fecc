"""The plugins feature of the console: the REST API (:mod:`.rest`), the pages (:mod:`.page`),
the changes both make (:mod:`.operations`: upload, delete, reload, settings into sidecars)
and the invoke form built from a handler's declared arguments (:mod:`.invoke_form`)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from omnicore.console.plugins import page, rest

__all__ = ["routes"]


def routes() -> list[BaseRoute]:
    return [*rest.routes(), *page.routes()]
