"""The route table: the operator's routes (``serve.routes`` of the app config, ``routes`` of
each plugin's sidecar, a manifest's proposals where an entry accepts one), checked together
(specs/http-routes.md §5): patterns, conflicts naming both routes, and a lookup by method
and path."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import ValidationError

from omnicore.config.routes import NAME_RE, RATE_RE, RouteConfig
from omnicore.errors import ConfigError
from omnicore.routes.patterns import Pattern, _PatternError, parse, split_path

__all__ = ["Match", "Route", "RouteTable", "ServedRoute", "SourceRoutes", "build", "route_of"]

#: A '.' or '..' segment of a path (clean_path refuses it).
_DOT_SEGMENT = re.compile(r"(^|/)\.\.?(/|$)")
_PERIOD = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
           "h": 3600, "hour": 3600}
#: The proposal keys a manifest may set (never limits, secrets or the prefix).
PROPOSED = ("path", "methods", "handler", "auth", "mode")


class ServedRoute(NamedTuple):
    """A matched route's template, where ``scope["route"]`` is read (``http.route``)."""

    path: str


@dataclass(frozen=True)
class Route:
    """One served route, resolved."""

    name: str
    plugin: str
    handler: str
    pattern: Pattern
    #: None: any method.
    methods: frozenset[str] | None
    settings: RouteConfig
    #: Where it was written: ``omnicore.yaml serve.routes`` or the sidecar's path.
    source: str
    #: ``(tokens per second, burst)`` of ``rate_limit``, or None.
    rate: tuple[float, int] | None = None

    def allows(self, method: str) -> bool:
        if self.methods is None or method in self.methods:
            return True
        return method == "HEAD" and "GET" in self.methods

    def shares_method(self, other: Route) -> str | None:
        """A method both routes serve (for a conflict), or None."""
        if self.methods is None:
            return next(iter(sorted(other.methods))) if other.methods else "GET"
        if other.methods is None:
            return next(iter(sorted(self.methods)))
        mine = self.methods | ({"HEAD"} if "GET" in self.methods else set())
        theirs = other.methods | ({"HEAD"} if "GET" in other.methods else set())
        both = sorted(mine & theirs)
        return both[0] if both else None

    def served_as(self, root: str) -> ServedRoute:
        """The route as Starlette's matched route is read (``.path``: its template under
        ``root``, the prefix it is served under)."""
        return ServedRoute(root.rstrip("/") + self.pattern.text)

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"name": self.name, "plugin": self.plugin, "handler": self.handler,
                "path": self.pattern.text,
                "methods": sorted(self.methods) if self.methods is not None else ["*"],
                "auth": s.auth, "mode": s.mode or "envelope", "source": self.source,
                "timeout_ms": s.timeout_ms, "max_concurrent": s.max_concurrent,
                "rate_limit": s.rate_limit, "max_body_bytes": s.max_body_bytes,
                "max_response_bytes": s.max_response_bytes}


@dataclass(frozen=True)
class Match:
    route: Route | None
    params: dict[str, str] = field(default_factory=dict)
    #: The methods of the routes whose pattern matched (for 405's Allow).
    allowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceRoutes:
    """The routes one place wrote: the app config's, or one plugin's sidecar."""

    source: str
    #: The sidecar's plugin (None: the app config, where each route names its plugin).
    plugin: str | None
    entries: Mapping[str, Any]


class RouteTable:
    """Routes by first literal segment, then in order; a lookup is a few pattern matches."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(sorted(routes, key=lambda r: r.name))
        self.by_name = {r.name: r for r in self.routes}

    def __len__(self) -> int:
        return len(self.routes)

    def match(self, method: str, path: str) -> Match:
        parts = split_path(path)
        allowed: list[str] = []
        for route in self.routes:
            params = route.pattern.match(parts)
            if params is None:
                continue
            if route.allows(method):
                return Match(route, params)
            allowed.extend(sorted(route.methods or ()))
            if route.methods and "GET" in route.methods:
                allowed.append("HEAD")
        return Match(None, {}, tuple(dict.fromkeys(allowed)))


def _rate(text: str | None) -> tuple[float, int] | None:
    if text is None:
        return None
    m = RATE_RE.fullmatch(text.strip())
    assert m is not None  # the config checked it
    n = int(m.group(1))
    return n / _PERIOD[m.group(2)], n


def route_of(name: str, entry: Any, *, source: str, plugin: str | None,
             proposals: Mapping[str, Mapping[str, Any]] | None = None) -> Route:
    """One entry as a :class:`Route`; :class:`ConfigError` naming the route and its source
    says what is wrong. ``proposals``: the plugin manifest's proposals by name, when known."""
    where = f"route '{name}' ({source})"
    if not NAME_RE.fullmatch(str(name)):
        raise ConfigError(f"{where}: a route's name is 1-63 of a-z 0-9 _ -", key=str(name),
                          source=source)
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: a route is a mapping of its keys", key=name,
                          value=entry, source=source)
    data = dict(entry)
    if plugin is not None:
        if data.get("plugin", plugin) != plugin:
            raise ConfigError(f"{where}: a sidecar's routes are its own plugin's "
                              f"('{plugin}'), not '{data['plugin']}'", key=name,
                              source=source)
        data["plugin"] = plugin
    proposal = data.get("proposal")
    if proposal is not None:
        offered = (proposals or {}).get(str(proposal))
        if offered is None:
            known = ", ".join(sorted(proposals or ())) or "none"
            raise ConfigError(f"{where}: plugin '{data.get('plugin')}' proposes no route "
                              f"'{proposal}' (its proposals: {known})", key=name,
                              source=source)
        for key in PROPOSED:
            if key in offered and data.get(key) is None:
                data[key] = offered[key]
    try:
        settings = RouteConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {loc + ': ' if loc else ''}{first['msg']}", key=name,
                          source=source) from None
    missing = [k for k in ("plugin", "handler", "path", "auth")
               if getattr(settings, k) is None]
    if missing:
        raise ConfigError(f"{where}: needs {', '.join(repr(k) for k in missing)}", key=name,
                          source=source)
    assert settings.path is not None and settings.plugin and settings.handler
    try:
        pattern = parse(settings.path)
    except _PatternError as exc:
        raise ConfigError(f"{where}: {exc}", key=name, source=source) from None
    methods = settings.methods or ["GET"]
    return Route(name, settings.plugin, settings.handler, pattern,
                 None if "*" in methods else frozenset(methods), settings, source,
                 _rate(settings.rate_limit))


def conflict(a: Route, b: Route) -> str | None:
    """The message refusing ``a`` and ``b`` together, or None when they never meet."""
    if a.name == b.name:
        return (f"route '{a.name}' is written twice: in {a.source} and in {b.source}; a "
                "route's name is unique")
    if not a.pattern.overlaps(b.pattern):
        return None
    method = a.shares_method(b)
    if method is None:
        return None
    return (f"route '{a.name}' ({a.source}) and route '{b.name}' ({b.source}) both match "
            f"{method} {a.pattern.example(b.pattern)}: a request must have one route (give "
            "them paths or methods that do not overlap)")


def build(sources: Iterable[SourceRoutes],
          proposals: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None, *,
          strict_first: bool = True) -> tuple[RouteTable, list[str]]:
    """The table of ``sources`` in order, and the problems that kept routes out.

    The first source (the app config) is all or nothing: with ``strict_first`` a problem in
    it raises :class:`ConfigError`. Each later source (a sidecar) that does not check, alone
    or against the routes before it, is left out whole, and its problem returned."""
    taken: list[Route] = []
    problems: list[str] = []
    for i, src in enumerate(sources):
        try:
            mine: list[Route] = []
            for name, entry in src.entries.items():
                plugin = src.plugin if src.plugin is not None else \
                    (entry.get("plugin") if isinstance(entry, Mapping) else None)
                if isinstance(entry, Mapping) and entry.get("proposal") is not None \
                        and str(plugin) not in (proposals or {}):
                    continue  # its plugin is not loaded (yet): its proposals are unknown
                route = route_of(str(name), entry, source=src.source, plugin=src.plugin,
                                 proposals=(proposals or {}).get(str(plugin or "")))
                if not route.settings.enabled:
                    continue
                for other in (*taken, *mine):
                    why = conflict(other, route)
                    if why is not None:
                        raise ConfigError(why, key=str(name), source=src.source)
                mine.append(route)
        except ConfigError as exc:
            if i == 0 and strict_first:
                raise
            problems.append(str(exc))
            continue
        taken.extend(mine)
    return RouteTable(taken), problems


def clean_path(path: str) -> str | None:
    """``path`` (the server's decoded request path) when a route may see it, else None: a
    NUL, a ``.`` or ``..`` segment or an empty one (``//``) is refused."""
    # A '.' or '..' segment follows a '/' (the path starts with one): a path with no "/."
    # has none, and the expression is not searched (its cache lookup and search were half
    # of this check, on every request to the prefix).
    if not path.startswith("/") or "\x00" in path or "//" in path \
            or ("/." in path and _DOT_SEGMENT.search(path)):
        return None
    return path
