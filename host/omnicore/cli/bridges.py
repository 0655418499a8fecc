"""``omnicore bridges``: a running host's bridges to message brokers, their state, lag and
counters (``GET /api/v1/bridges`` of its console, cli/remote.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["bridges"]

#: Columns of the table: heading, and how a row's value is read.
COLUMNS: tuple[tuple[str, Any], ...] = (
    ("NAME", lambda b: b["name"]),
    ("KIND", lambda b: b["kind"]),
    ("STATE", lambda b: b["state"]),
    ("LAG IN/OUT", lambda b: f"{b['lag']['inbound_unsettled']}/{b['lag']['outbound_held']}"),
    ("RECEIVED", lambda b: b["received"]),
    ("ACKED", lambda b: b["acked"]),
    ("PUBLISHED", lambda b: b["published"]),
    ("REFUSED", lambda b: b["refused"]),
    ("DEAD", lambda b: b["dead"]),
    ("RETRIED", lambda b: b["retried"]),
    ("DROPPED", lambda b: b["dropped"]),
)


def table(rows: list[dict[str, Any]]) -> str:
    """The bridges as an aligned table, a down bridge's reason on the line under it."""
    if not rows:
        return "no bridges configured (bridges: in omnicore.yaml)"
    cells = [[h for h, _ in COLUMNS], *([str(get(r)) for _, get in COLUMNS] for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = []
    for i, line in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        row = rows[i - 1] if i else None
        if row is not None and row.get("reason"):
            lines.append(f"  {row['state']}: {row['reason']}")
    return "\n".join(lines)


@click.command("bridges")
@click.option("--app", "appdir", type=click.Path(file_okay=False, path_type=Path),
              help="The app folder whose running host to ask (default: here).")
@click.option("--remote", metavar="URL", help="Ask the host at URL (token: $OMNICORE_TOKEN).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the bridges as JSON (the REST API's items).")
def bridges(appdir: Path | None, remote: str | None, as_json: bool) -> None:
    """List the running host's bridges to message brokers: state, lag and counters.

    Lag is what the bridge has in hand: inbound messages read and not yet acknowledged (their
    delivery not yet stored), outbound ones held until the broker confirms them. A bridge
    that is down shows its reason under its line; it keeps retrying (`omnicore run` logs one
    line when it goes down and one when it is back).
    """
    from omnicore.cli.plugins import host_for

    host = host_for(appdir, remote, "a bridge's state lives in the host that runs it")
    rows = list(host.request("GET", "/api/v1/bridges")["items"])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(table(rows))
