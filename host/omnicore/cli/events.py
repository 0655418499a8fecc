"""``omnicore events``: publish an event as the operator (through the running host, which
delivers it: ``POST /api/v1/events``), and list the event log (from the app's storage)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from omnicore.cli.appdata import app_option, app_storage

__all__ = ["events"]

_APP = app_option("The app folder (its running host publishes; its storage is listed).")


@click.group("events")
def events() -> None:
    """Events: publish one as the operator, list the event log."""


@events.command("publish")
@click.argument("topic")
@click.argument("data", required=False)
@_APP
@click.option("--remote", metavar="URL", help="Publish on the host at URL (token: "
                                               "$OMNICORE_TOKEN).")
def publish(topic: str, data: str | None, appdir: Path, remote: str | None) -> None:
    """Publish an event on TOPIC with DATA (JSON: an object, an array, a number, "a string";
    none: no data) to every plugin subscribed to it, as the Events page and
    `POST /api/v1/events` do; audited as the operator's.

    The running host publishes it (its subscribers live there): start one with
    `omnicore run` first, or name one with --remote.
    """
    from omnicore.cli.plugins import host_for

    body: dict[str, object] = {"topic": topic}
    if data is not None:
        try:
            body["data"] = json.loads(data)
        except ValueError as exc:
            raise click.BadParameter(
                f"is not JSON ({exc}); a string is quoted in JSON: '\"hello\"'",
                param_hint="DATA") from None
    host = host_for(appdir, remote, "an event is delivered by the host its subscribers run in")
    doc = host.request("POST", "/api/v1/events", body)
    click.echo(f"event {doc['id']} published on {doc['topic']}")


@events.command("list")
@click.option("--topic", "prefix", default="", help="Only topics starting with this.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="At most this many events.")
@_APP
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def list_events(prefix: str, limit: int, appdir: Path, as_json: bool) -> None:
    """List the event log, newest first: what plugins and operators published (kept by
    retention.events and capabilities.events.retain)."""
    with app_storage(appdir) as store:
        found = store.events.recent(limit, prefix)
    if as_json:
        click.echo(json.dumps([{"id": e.id, "topic": e.topic, "plugin": e.plugin,
                                "at": e.created_at,
                                "data": e.payload.decode("utf-8", "replace")}
                               for e in found]))
        return
    click.echo(f"{'ID':>6}  {'AT':<19}  {'BY':<16}  {'TOPIC':<24}  DATA")
    for e in found:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.created_at))
        text = e.payload[:60].decode("utf-8", "replace").replace("\n", " ")
        click.echo(f"{e.id:>6}  {at:<19}  {e.plugin or 'operator':<16}  {e.topic:<24}  {text}")
