"""``omnicore logs NAME``: a running host's log of one plugin, and with ``--follow`` its new
lines as they come (the console's REST API and its live feed, cli/remote.py)."""

from __future__ import annotations

import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import click

from omnicore.errors import OmniError

__all__ = ["logs"]

LEVELS = ("trace", "debug", "info", "warn", "error")


def _line(entry: dict[str, Any]) -> str:
    import time

    stamp = time.strftime("%H:%M:%S", time.localtime(float(entry.get("time", 0))))
    return f"{stamp} [{entry.get('level', '?')}] {entry.get('message', '')}"


def _follow(remote: Any, name: str, level: str | None) -> None:
    """Print the live feed's new log entries of ``name`` until interrupted."""
    import urllib.error
    import urllib.request

    # backlog=0: the listing already printed the recent lines.
    query = urllib.parse.urlencode({"plugin": name, "kind": "log", "backlog": 0,
                                    **({"level": level} if level else {})})
    req = urllib.request.Request(f"{remote.url.rstrip('/')}/api/v1/stream?{query}")
    req.add_header("Accept", "text/event-stream")
    if remote.token:
        req.add_header("Authorization", f"Bearer {remote.token}")
    try:
        # No timeout: the feed sends a keep-alive comment every 15 s while it is quiet.
        with urllib.request.urlopen(req) as resp:
            data: list[str] = []
            for raw in resp:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    click.echo(_line(json.loads("\n".join(data))))
                    sys.stdout.flush()
                    data = []
    except urllib.error.URLError as exc:
        raise OmniError(f"the live feed of {remote.url} ended: {exc.reason}") from None
    except KeyboardInterrupt:
        pass


@click.command()
@click.argument("name")
@click.option("--app", "appdir", type=click.Path(file_okay=False, path_type=Path),
              help="The app folder whose running host to ask (default: here).")
@click.option("--remote", metavar="URL", help="Ask the host at URL (token: $OMNICORE_TOKEN).")
@click.option("-n", "--lines", "limit", type=click.IntRange(1, 1000), default=50,
              show_default=True, help="How many of the latest lines to show.")
@click.option("--level", type=click.Choice(LEVELS), help="Only lines at this level or above.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they come.")
def logs(name: str, appdir: Path | None, remote: str | None, limit: int, level: str | None,
         follow: bool) -> None:
    """Show plugin NAME's own log lines from the running host (``omnicore run``).

    The log lives in the host's memory (its last 1,000 lines): with no host running there is
    nothing to show; ``omnicore call -v`` prints a one-off call's lines instead.
    """
    from omnicore.cli.plugins import host_for

    host = host_for(appdir, remote, "a plugin's log lives in the host's memory (`omnicore "
                                    "call -v` shows a single call's log lines)")
    query = f"?limit={limit}" + (f"&level={level}" if level else "")
    doc = host.request("GET", f"/api/v1/plugins/{urllib.parse.quote(name, safe='')}/logs"
                              f"{query}")
    items = list(reversed(list(doc["items"])))  # the API lists newest first
    for entry in items:
        click.echo(_line(entry))
    if follow:
        sys.stdout.flush()
        _follow(host, name, level)
