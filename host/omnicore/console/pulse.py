"""Live figures for every page: one Server-Sent-Events stream a page, ``/api/v1/live``.

A page names what it shows with ``data-live="KEY"`` on the elements that hold a figure; its
stream sends ``figures`` frames, ``{"KEY": "text", ...}``, first all of them and then only
what changed, which ``console.js`` writes in place. The figures are computed once a tick for
everyone (:meth:`Pulse.figures`), however many pages are open, and each stream only compares
the few keys of its scope, so an idle open page costs one dictionary comparison a second.

Scopes: ``host`` (every page: calls, errors, plugin states, jobs, event drops), ``plugins``
(also every plugin's row), ``plugin:NAME`` (also that plugin's figures, its instance memory
as last sampled among them). A page whose rows come and go (tasks, events, a workflow run)
asks for a ``version`` key that changes when they do, and ``console.js`` fetches the page
again; a page with charts asks for ``charts``, which moves with every sample of the series.
With ``feed=1`` the same stream carries the Logs page's entries (``plugin`` / ``level``
filters), so that page opens one stream too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from omnicore.console.charts import size_text
from omnicore.console.live import TooManySubscribers

if TYPE_CHECKING:
    from omnicore.app import OmniApp
    from omnicore.console.series import Series

__all__ = ["Pulse", "compute"]


KEEPALIVE_S = 15.0


def _us(seconds: float, calls: int = 1) -> str:
    if not calls:
        return "-"  # no call yet: no latency, rather than "0.0 µs"
    us = seconds * 1e6
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} µs"


class Pulse:
    """The figures of the host at most once every ``interval_s``, shared by every stream."""

    def __init__(self, app: OmniApp, interval_s: float = 1.0, max_streams: int = 256,
                 history: Series | None = None) -> None:
        self.app = app
        self.history = history
        self.interval_s = interval_s
        self.max_streams = max_streams
        self.streams = 0
        self._at = 0.0
        self._figures: dict[str, str] = {}
        self._lock = asyncio.Lock()
        #: Each scope's share of the current figures, cut once a tick for all its streams.
        self._scoped: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}
        #: Each plugin's percentile texts, kept while its call count stands still: an idle
        #: host sorts no durations.
        self._latency: dict[str, tuple[int, str, str, str]] = {}

    async def figures(self) -> dict[str, str]:
        """Every figure, computed again when the last copy is older than the interval."""
        async with self._lock:
            if time.monotonic() - self._at >= self.interval_s * 0.9:
                loop = asyncio.get_running_loop()
                self._figures = await loop.run_in_executor(None, compute, self.app,
                                                           self._latency, self.history)
                self._scoped = {}
                self._at = time.monotonic()
            return self._figures

    async def scoped(self, scope: str, versions: tuple[str, ...]) -> dict[str, str]:
        """The figures of ``scope`` (and the ``versions`` asked for), shared by its streams."""
        figures = await self.figures()
        key = (scope, versions)
        found = self._scoped.get(key)
        if found is None:
            found = self._scoped[key] = _scoped(figures, scope, list(versions))
        return found

    def stream(self, scope: str, versions: list[str],
               feed: Callable[[], AsyncIterator[bytes]] | None = None,
               extra: Callable[[], dict[str, str]] | None = None) -> AsyncIterator[bytes]:
        """SSE frames for one page until the client leaves; ``feed`` opens the log entries
        to carry along (the Logs page); ``extra`` adds this page's own figures each tick (a
        workflow run's version). TooManySubscribers past ``max_streams``."""
        if self.streams >= self.max_streams:
            raise TooManySubscribers(f"{self.streams} live pages are open already")
        entries = feed() if feed is not None else None
        self.streams += 1
        return self._frames(scope, versions, entries, extra)

    async def _frames(self, scope: str, versions: list[str], feed: AsyncIterator[bytes] | None,
                      extra: Callable[[], dict[str, str]] | None) -> AsyncIterator[bytes]:
        sent: dict[str, str] = {}
        seen: dict[str, str] | None = None
        pending: asyncio.Future[bytes] | None = None
        quiet = time.monotonic()
        try:
            yield b"retry: 1000\n\n"
            while True:
                figures = await self.scoped(scope, tuple(versions))
                if extra is not None:
                    figures = {**figures, **await asyncio.get_running_loop().run_in_executor(
                        None, extra)}
                # The same shared copy as last tick: nothing to compare (an idle page).
                changed = {} if figures is seen else {
                    k: v for k, v in figures.items() if sent.get(k) != v}
                seen = figures if extra is None else None
                if changed:
                    sent.update(changed)
                    quiet = time.monotonic()
                    yield b"event: figures\ndata: " + json.dumps(
                        changed, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
                elif time.monotonic() - quiet > KEEPALIVE_S:
                    quiet = time.monotonic()
                    yield b": keepalive\n\n"
                deadline = time.monotonic() + self.interval_s
                while feed is not None and (left := deadline - time.monotonic()) > 0:
                    if pending is None:
                        pending = asyncio.ensure_future(anext(feed))
                    done, _ = await asyncio.wait({pending}, timeout=left)
                    if not done:
                        break
                    try:
                        frame = pending.result()
                    except StopAsyncIteration:
                        return
                    pending = None
                    if not frame.startswith((b"retry:", b": keepalive")):
                        yield frame
                if feed is None:
                    await asyncio.sleep(self.interval_s)
        finally:
            self.streams -= 1
            if pending is not None:
                pending.cancel()
            if feed is not None:
                with contextlib.suppress(Exception):
                    await feed.aclose()  # type: ignore[attr-defined]


def _scoped(figures: dict[str, str], scope: str, versions: list[str]) -> dict[str, str]:
    own = f"plugin.{scope.removeprefix('plugin:')}." if scope.startswith("plugin:") else None
    return {k: v for k, v in figures.items()
            if not k.startswith(("plugin.", "version."))
            or (scope == "plugins" and k.startswith("plugin."))
            or (own is not None and k.startswith(own))
            or k.removeprefix("version.") in versions}


def compute(app: OmniApp,
            latency: dict[str, tuple[int, str, str, str]] | None = None,
            history: Series | None = None) -> dict[str, str]:
    """Every figure of the host, as the text the pages show; ``latency`` caches each
    plugin's percentile texts by its call count; ``history`` gives the charts' figures."""
    latency = {} if latency is None else latency
    out: dict[str, str] = {}
    calls = errors = 0
    states: dict[str, int] = {}
    states_of: dict[str, str] = {}
    for info in app.plugins:
        states_of[info.name] = info.state
        states[info.state] = states.get(info.state, 0) + 1
        out[f"plugin.{info.name}.state"] = info.state
        s = info.stats
        if s is None:
            continue
        calls += s.calls
        errors += s.errors
        out[f"plugin.{info.name}.calls"] = str(s.calls)
        out[f"plugin.{info.name}.errors"] = str(s.errors)
        known = latency.get(info.name)
        if known is None or known[0] != s.calls:
            known = latency[info.name] = (s.calls, _us(s.quantile(0.5), s.calls),
                                          _us(s.quantile(0.99), s.calls),
                                          _us(s.mean_seconds, s.calls))
        _n, out[f"plugin.{info.name}.p50"], out[f"plugin.{info.name}.p99"], \
            out[f"plugin.{info.name}.mean"] = known
    out["calls"], out["errors"], out["plugins"] = str(calls), str(errors), str(sum(
        states.values()))
    for state in ("loaded", "needs-grant", "failed", "disabled", "circuit-open", "half-open"):
        out[f"state.{state}"] = str(states.get(state, 0))
    jobs: dict[str, int] = {}
    for (_plugin, state), n in app.jobs.counts().items():
        jobs[state] = jobs.get(state, 0) + n
    for state in ("queued", "running", "succeeded", "dead", "cancelled"):
        out[f"jobs.{state}"] = str(jobs.get(state, 0))
    subs = app.subscriptions.all()
    out["events.subscribers"] = str(len(subs))
    out["events.dropped"] = str(sum(s.dropped for s in subs))
    out["events.hop_drops"] = str(app.subscriptions.hop_drops)
    out["events.inbox"] = str(sum(len(s.inbox) for s in subs))
    out["uptime"] = f"{app.uptime:.0f} s"
    # What makes a listing page fetch itself again: its rows changed.
    # "tasks": the key pages asked for before the durable queue's rows were called jobs.
    out["version.jobs"] = out["version.tasks"] = json.dumps(sorted(jobs.items()))
    for gone in latency.keys() - states_of.keys():
        del latency[gone]
    if history is not None:
        out["version.charts"] = str(history.samples)
        for name, used in history.memory.items():
            out[f"plugin.{name}.memory"] = size_text(used)
    newest = app.storage.events.recent(1)
    out["version.events"] = f"{out['events.dropped']}/{newest[0].id if newest else 0}"
    return out
