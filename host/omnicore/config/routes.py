"""``serve.*``: plugins' handlers served as HTTP routes (specs/http-routes.md,
docs/guides/http-routes.md). A route entry has the same keys in ``omnicore.yaml``
(``serve.routes.NAME``) and in a plugin's sidecar (``routes.NAME``, its plugin implied)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from omnicore.config.strict import Strict

__all__ = ["NAME_RE", "RATE_RE", "RouteConfig", "ServeConfig"]

#: A route's name (the metrics' ``route`` label, the log's, the conflict message's).
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
#: ``N/s``, ``N/min``, ``N/h``: a token bucket of ``N`` refilled over the period.
RATE_RE = re.compile(r"([1-9][0-9]{0,8})\s*/\s*(s|sec|second|m|min|minute|h|hour)")
_PREFIX_RE = re.compile(r"(/[A-Za-z0-9._~-]+)+")
_METHOD_RE = re.compile(r"[A-Z]{1,20}|\*")


class RouteConfig(Strict):
    """One route: a path pattern and methods mapped to one plugin's handler, with its auth
    and limits (specs/http-routes.md §5)."""

    plugin: str | None = Field(default=None, min_length=1,
                               description="the plugin that answers (a sidecar's own: implied)")
    handler: str | None = Field(default=None, min_length=1,
                                description="the handler called (or the proposal's)")
    proposal: str | None = Field(default=None, min_length=1,
                                 description="accept the plugin manifest's proposed route of "
                                             "this name; its keys fill what is not set here")
    path: str | None = Field(default=None,
                             description="the path pattern after serve.prefix: /a/{id}, "
                                         "/files/{rest...}")
    methods: list[str] | None = Field(default=None,
                                      description="methods served ([GET]; GET answers HEAD "
                                                  "too; [\"*\"]: any)")
    auth: Literal["public", "token", "github", "stripe"] | None = Field(
        default=None,
        description="public; token (an API token, as the REST API); github "
                    "(X-Hub-Signature-256); stripe (Stripe-Signature). Required")
    role: Literal["viewer", "admin"] = Field(default="viewer",
                                            description="auth token: the role it needs")
    secret: str | None = Field(default=None, min_length=1, max_length=128,
                               description="github/stripe: the secret's name (omnicore secrets)")
    tolerance_s: int = Field(default=300, ge=1, le=86400,
                             description="stripe: the signature's timestamp may be this old")
    mode: Literal["envelope", "body"] | None = Field(
        default=None,
        description="envelope: the request and response as omnicore:http blocks; body: the "
                    "raw body in, a 200 JSON answer out (envelope)")
    max_body_bytes: int = Field(default=1 << 20, ge=0, description="413 past it")
    max_header_bytes: int = Field(default=8192, gt=0,
                                  description="431 past it (names and values together)")
    max_headers: int = Field(default=100, gt=0, description="431 past this many headers")
    max_response_bytes: int = Field(default=8 << 20, gt=0,
                                    description="502 past it (the whole output block)")
    timeout_ms: int = Field(default=10_000, gt=0,
                            description="the request's deadline: 408 for the body, 504 for "
                                        "the call")
    max_concurrent: int = Field(default=16, gt=0,
                                description="calls in flight on this host; 503 past it")
    rate_limit: str | None = Field(default=None,
                                   description="N/s, N/min or N/h per host; 429 past it")
    enabled: bool = Field(default=True, description="serve this route")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"a route's path starts with '/', got {value!r}")
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = [m.upper() for m in value]
        bad = [m for m in out if not _METHOD_RE.fullmatch(m)]
        if bad or not out:
            raise ValueError(f"methods are HTTP method names or '*', got {value!r}")
        return out

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None and not RATE_RE.fullmatch(value.strip()):
            raise ValueError(f"rate_limit is N/s, N/min or N/h, got {value!r}")
        return value

    @model_validator(mode="after")
    def _signed(self) -> RouteConfig:
        if self.auth in ("github", "stripe") and not self.secret:
            raise ValueError(f"auth {self.auth} needs 'secret': the name of its secret in the "
                             "secret store (omnicore secrets set NAME)")
        return self


class ServeConfig(Strict):
    """``serve.*``: plugin handlers served as HTTP routes on the console's server, under
    ``prefix``. Nothing is served unless a route maps it (specs/http-routes.md)."""

    prefix: str = Field(default="/http",
                        description="the path every route is served under (restart to "
                                    "change); may not be one of the console's own")
    routes: dict[str, RouteConfig] = Field(default_factory=dict,
                                           description="route name -> route")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.rstrip("/") if value != "/" else value
        if not _PREFIX_RE.fullmatch(value) or any(
                seg in (".", "..") for seg in value.split("/")):
            # '.' and '..' are not segments a client sends as written (clients and proxies
            # resolve them): /./api would be the console's /api to everybody but this check
            raise ValueError(f"serve.prefix is '/' and one or more path segments of "
                             f"A-Za-z0-9._~- other than '.' and '..' (e.g. /http), got "
                             f"{value!r}")
        return value

    @field_validator("routes")
    @classmethod
    def _names(cls, value: dict[str, RouteConfig]) -> dict[str, RouteConfig]:
        for name, route in value.items():
            if not NAME_RE.fullmatch(name):
                raise ValueError(f"route name {name!r}: 1-63 of a-z 0-9 _ -, starting with a "
                                 "letter or digit")
            if route.plugin is None:
                raise ValueError(f"route {name!r} needs 'plugin' (the plugin that answers)")
        return value
