"""A database connector as the operator declared it: ``connectors.<name>`` with ``kind:
postgres``, ``mysql`` or ``redis`` (specs/abi.md §4.12).

The URL in the config never carries a password: it comes from a secret (``secret``), or the
whole URL does (``url_secret``). :meth:`DbConnector.describe` is what the console may show
(kind, host, port, database, user), never a credential.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from omnicore.egress.db.statements import NO_WIDENING, Widening, widening
from omnicore.errors import ConfigError
from omnicore.storage.secrets import check_name

__all__ = ["DB_KINDS", "DbConnector", "Target", "db_connector", "db_connectors_from",
           "target_of"]

#: The kinds served by :mod:`omnicore.egress.db`; ``http`` stays :mod:`omnicore.egress`'s.
DB_KINDS = ("postgres", "mysql", "redis")
_SCHEMES = {"postgres": ("postgresql", "postgres"), "mysql": ("mysql", "mariadb"),
            "redis": ("redis", "rediss")}
_DEFAULT_PORT = {"postgres": 5432, "mysql": 3306, "redis": 6379}
_INTS = ("pool_size", "statement_timeout_ms", "max_rows", "max_result_bytes",
         "max_transactions")
_KEYS = frozenset({"kind", "url", "secret", "url_secret", "read_only", "key_prefix",
                   "statements", "plugins", "privileges", "password_to_unverified_server",
                   *_INTS})
#: Defaults of §4.10/§4.11 (a redis reply is capped smaller than a result set).
_DEFAULTS = {"pool_size": 4, "statement_timeout_ms": 10_000, "max_rows": 10_000,
             "max_result_bytes": 8 << 20, "max_transactions": 2}
_REDIS_RESULT_BYTES = 1 << 20
DEFAULT_KEY_PREFIX = "omnicore:{plugin}:"


@dataclass(frozen=True)
class Target:
    """Where a connector's URL points, without its password: the connection's parameters."""

    host: str
    port: int
    database: str
    user: str | None
    password: str | None = None     # only from a secret (url_secret or secret)
    socket: str | None = None       # ?host=/path or ?unix_socket=/path: a local socket
    tls: bool = False
    #: ?sslmode= (libpq's names): disable, require, verify-ca or verify-full.
    sslmode: str = "disable"
    #: ?sslrootcert=: the CA file (absolute) a verify-* mode checks the server's chain
    #: against; None with verify-full: the system's CAs.
    sslrootcert: str | None = None
    #: ?channel_binding= (PostgreSQL): require, prefer or disable; None: the connector's
    #: default (require over TLS, see postgres.py).
    channel_binding: str | None = None
    #: The operator's ``connectors.<name>.password_to_unverified_server: allow``: the
    #: password (or PostgreSQL's MD5 of it) may go to a server TLS did not verify.
    password_unverified: bool = False

    @property
    def verified(self) -> bool:
        """Whether the server is who the URL names (TLS, its chain and its host name checked):
        only then may a password travel in clear inside the TLS session."""
        return self.sslmode == "verify-full"

    @property
    def password_ok(self) -> bool:
        """Whether an authentication that hands the server the password (in clear, or an
        MD5 of it) may go on (specs/abi.md §4.12, Passwords): the server verified, or the
        operator allowed it for this connector."""
        return self.verified or self.password_unverified


#: The URL query parameters each kind honours (anything else is refused at load).
_PARAMS = {"postgres": frozenset({"host", "sslmode", "sslrootcert", "channel_binding"}),
           "mysql": frozenset({"host", "unix_socket", "sslmode", "sslrootcert"}),
           "redis": frozenset({"host", "unix_socket"})}
_SSLMODES = ("disable", "require", "verify-ca", "verify-full")
_CHANNEL_BINDING = ("require", "prefer", "disable")


def _query(kind: str, query: str, where: str) -> dict[str, str]:
    """The URL's query parameters, each honoured by ``kind`` and given once; ConfigError
    naming the first that is not (a parameter silently dropped would leave the operator
    believing, say, that TLS is on)."""
    out: dict[str, str] = {}
    for part in query.split("&") if query else ():
        name, eq, value = part.partition("=")
        name = unquote(name)
        if name not in _PARAMS[kind]:
            known = ", ".join(sorted(_PARAMS[kind]))
            raise ConfigError(f"{where}: the URL parameter {name!r} is not one a {kind} "
                              f"connector honours (it takes {known})", key=where)
        if not eq or name in out:
            raise ConfigError(f"{where}: the URL parameter {name!r} must be given once, "
                              "with a value", key=where)
        out[name] = unquote(value)
    return out


def _tls(kind: str, query: dict[str, str], where: str) -> dict[str, Any]:
    """sslmode, sslrootcert and channel_binding of a SQL connector's URL, checked."""
    mode = query.get("sslmode", "disable")
    if mode in ("prefer", "allow"):
        raise ConfigError(f"{where}: sslmode={mode} falls back to an unencrypted connection "
                          "without saying so; use verify-full (or verify-ca, require), or "
                          "disable to say there is no TLS", key=where)
    if mode not in _SSLMODES:
        raise ConfigError(f"{where}: sslmode must be one of {', '.join(_SSLMODES)}",
                          key=where)
    root = query.get("sslrootcert")
    if root is not None:
        if mode not in ("verify-ca", "verify-full"):
            raise ConfigError(f"{where}: sslrootcert is read only with sslmode=verify-ca or "
                              "verify-full", key=where)
        root = os.path.expandvars(os.path.expanduser(root))
        if not os.path.isabs(root):
            raise ConfigError(f"{where}: sslrootcert must be an absolute path here (a "
                              "relative one is read from the app folder only in "
                              "omnicore.yaml's connectors.<name>.url, not in a URL from a "
                              "secret)", key=where)
        if not os.path.isfile(root):
            raise ConfigError(f"{where}: sslrootcert {root} is not a file", key=where)
    elif mode == "verify-ca":
        raise ConfigError(f"{where}: sslmode=verify-ca needs sslrootcert (the CA file): "
                          "without it any certificate a public CA signed would pass",
                          key=where)
    binding = query.get("channel_binding")
    if binding is not None and binding not in _CHANNEL_BINDING:
        raise ConfigError(f"{where}: channel_binding must be one of "
                          f"{', '.join(_CHANNEL_BINDING)}", key=where)
    if binding == "require" and mode == "disable":
        raise ConfigError(f"{where}: channel_binding=require needs TLS (sslmode)", key=where)
    return {"sslmode": mode, "sslrootcert": root, "channel_binding": binding}


def target_of(kind: str, url: str, where: str, *, allow_password: bool) -> Target:
    """The parts of a connector URL; ConfigError (never quoting the URL) if it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{where} is not a valid {kind} URL", key=where) from None
    if parts.scheme not in _SCHEMES[kind]:
        raise ConfigError(f"{where} must start with {_SCHEMES[kind][0]}://", key=where)
    if parts.password is not None and not allow_password:
        raise ConfigError(f"{where} must not carry a password: put it in a secret "
                          "(connectors.<name>.secret)", key=where)
    query = _query(kind, parts.query, where)
    socket = query.get("host") or query.get("unix_socket")
    if not parts.hostname and not socket:
        raise ConfigError(f"{where} must name a host", key=where)
    path = unquote(parts.path.lstrip("/"))
    if kind == "redis":
        if path and not path.isdigit():
            raise ConfigError(f"{where}: the database of a redis URL is a number", key=where)
        path = path or "0"
    tls = _tls(kind, query, where) if kind != "redis" else {}
    return Target(host=parts.hostname or "localhost", port=port or _DEFAULT_PORT[kind],
                  database=path, user=unquote(parts.username) if parts.username else None,
                  password=unquote(parts.password) if parts.password is not None else None,
                  socket=socket or None, tls=parts.scheme == "rediss", **tls)


@dataclass(frozen=True)
class DbConnector:
    """``connectors.<name>`` of a database kind (specs/abi.md §4.12)."""

    name: str
    kind: str
    url: str | None = None
    secret: str | None = None
    url_secret: str | None = None
    read_only: bool = False
    pool_size: int = 4
    statement_timeout_ms: int = 10_000
    max_rows: int = 10_000
    max_result_bytes: int = 8 << 20
    max_transactions: int = 2
    key_prefix: str = DEFAULT_KEY_PREFIX
    statements: Widening = NO_WIDENING  # kinds allowed beyond reads and row changes
    #: A role per plugin: (plugin, user, secret) (connectors.<name>.plugins).
    plugins: tuple[tuple[str, str, str], ...] = ()
    #: What a role's powers over the server do at its first connection: refuse, warn, strict.
    privileges: str = "refuse"
    #: ``password_to_unverified_server: allow``: cleartext and MD5 password authentication
    #: answered without verify-full (refused by default).
    password_unverified: bool = False

    @property
    def plugin_roles(self) -> frozenset[str]:
        """The plugins with a role of their own."""
        return frozenset(p for p, _, _ in self.plugins)

    def target_for(self, read_secret: Any, plugin: str | None) -> Target:
        """:meth:`target` for ``plugin``: with a role of its own (``plugins``), that role's
        user and the password from its secret."""
        role = next(((u, s) for p, u, s in self.plugins if p == plugin), None)
        if role is None:
            return self.target(read_secret)
        base = (target_of(self.kind, self.url, "url", allow_password=False)
                if self.url is not None else self.target(read_secret))
        raw = read_secret(role[1])
        if raw is None:
            raise LookupError(f"secret {role[1]} is not set")
        return Target(**{**base.__dict__, "user": role[0],
                         "password": raw.decode("utf-8", "replace"),
                         "password_unverified": self.password_unverified})

    def describe(self) -> dict[str, Any]:
        """What the console shows: never a secret (a URL from a secret shows as such)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind,
                               "read_only": self.read_only, "pool_size": self.pool_size}
        if self.url is not None:
            t = target_of(self.kind, self.url, "url", allow_password=False)
            out.update(host=t.socket or t.host, port=None if t.socket else t.port,
                       database=t.database, user=t.user)
        else:
            out.update(host=None, port=None, database=None, user=None,
                       url_from_secret=self.url_secret)
        if self.statements != NO_WIDENING:  # the operator's exceptions, audited with a change
            out["statements"] = self.statements.describe()
        if self.plugins:
            out["plugin_roles"] = {p: u for p, u, _ in self.plugins}
        if self.password_unverified:  # an exception to §4.12's rule, audited with a change
            out["password_to_unverified_server"] = "allow"
        return out

    def target(self, read_secret: Any) -> Target:
        """The connection's parameters with the password from the secret store;
        LookupError naming the secret (never its value) when it is not set."""
        if self.url_secret is not None:
            raw = read_secret(self.url_secret)
            if raw is None:
                raise LookupError(f"secret {self.url_secret} is not set")
            target = target_of(self.kind, raw.decode("utf-8", "replace"), "url",
                               allow_password=True)
            return replace(target, password_unverified=self.password_unverified)
        assert self.url is not None  # db_connector requires one of them
        target = target_of(self.kind, self.url, "url", allow_password=False)
        target = replace(target, password_unverified=self.password_unverified)
        if self.secret is None:
            return target
        raw = read_secret(self.secret)
        if raw is None:
            raise LookupError(f"secret {self.secret} is not set")
        return Target(**{**target.__dict__, "password": raw.decode("utf-8", "replace")})


def db_connector(name: str, data: Mapping[str, Any]) -> DbConnector:
    """A database connector from its config mapping (``None`` values are unset);
    ConfigError names the key."""
    key = f"connectors.{name}"
    data = {k: v for k, v in data.items() if v is not None}
    kind = data.get("kind")
    if kind not in DB_KINDS:
        raise ConfigError(f"{key}.kind must be http, postgres, mysql or redis", key=f"{key}.kind")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"{key}: unknown key {unknown[0]!r} for a {kind} connector",
                          key=f"{key}.{unknown[0]}")
    if ("url" in data) == ("url_secret" in data):
        raise ConfigError(f"{key} needs url (and secret for the password) or url_secret",
                          key=f"{key}.url")
    if "url" in data:
        target_of(kind, str(data["url"]), f"{key}.url", allow_password=False)
    for secret in ("secret", "url_secret"):
        if secret in data:
            check_name(data[secret])
    if "key_prefix" in data and kind != "redis":
        raise ConfigError(f"{key}.key_prefix is for redis connectors", key=f"{key}.key_prefix")
    values = dict(_DEFAULTS)
    if kind == "redis":
        values["max_result_bytes"] = _REDIS_RESULT_BYTES
    for option in _INTS:
        value = data.get(option, values[option])
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{key}.{option} must be a positive integer",
                              key=f"{key}.{option}", value=value)
        values[option] = value
    read_only = data.get("read_only", False)
    if not isinstance(read_only, bool):
        raise ConfigError(f"{key}.read_only must be true or false", key=f"{key}.read_only")
    prefix = data.get("key_prefix", DEFAULT_KEY_PREFIX)
    if not isinstance(prefix, str) or not prefix:
        raise ConfigError(f"{key}.key_prefix must be a non-empty string",
                          key=f"{key}.key_prefix")
    plugins = _plugin_roles(kind, data.get("plugins"), f"{key}.plugins")
    privileges = data.get("privileges", "refuse")
    if privileges not in _PRIVILEGES or (kind == "redis" and "privileges" in data):
        raise ConfigError(f"{key}.privileges must be one of {', '.join(_PRIVILEGES)} (postgres "
                          "and mysql connectors)", key=f"{key}.privileges", value=privileges)
    unverified = data.get("password_to_unverified_server", "refuse")
    if unverified not in ("refuse", "allow") or (
            kind == "redis" and "password_to_unverified_server" in data):
        raise ConfigError(f"{key}.password_to_unverified_server must be refuse (the default) "
                          "or allow (postgres and mysql connectors)",
                          key=f"{key}.password_to_unverified_server", value=unverified)
    return DbConnector(name=name, kind=kind, url=data.get("url"), secret=data.get("secret"),
                       plugins=plugins, privileges=privileges,
                       password_unverified=unverified == "allow",
                       url_secret=data.get("url_secret"), read_only=read_only,
                       key_prefix=prefix, statements=widening(
                           kind, data.get("statements"), f"{key}.statements"), **values)


_PRIVILEGES = ("refuse", "warn", "strict")


def _plugin_roles(kind: str, value: Any, where: str) -> tuple[tuple[str, str, str], ...]:
    """``connectors.<name>.plugins``: ``{plugin: {user: ROLE, secret: SECRET}}``, a database
    role per plugin with the secret holding its password; ConfigError names the key."""
    if value is None:
        return ()
    if kind == "redis":
        raise ConfigError(f"{where} is for postgres and mysql connectors", key=where)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must map plugin names to {{user, secret}}", key=where)
    out = []
    for plugin, role in sorted(value.items()):
        at = f"{where}.{plugin}"
        if not isinstance(plugin, str) or not plugin:
            raise ConfigError(f"{where}: a plugin's name must be a non-empty string", key=where)
        if not isinstance(role, Mapping) or set(role) != {"user", "secret"}:
            raise ConfigError(f"{at} must be {{user: ROLE, secret: SECRET}} (the role's name "
                              "and the secret holding its password)", key=at)
        user, secret = role["user"], role["secret"]
        if not isinstance(user, str) or not user or len(user) > 128 or \
                any(c in user for c in "@:/?#\x00"):
            raise ConfigError(f"{at}.user must be a database role's name", key=f"{at}.user",
                              value=user)
        if not isinstance(secret, str):
            raise ConfigError(f"{at}.secret must be a secret's name", key=f"{at}.secret")
        check_name(secret)
        out.append((plugin, user, secret))
    return tuple(out)


# What an http connector's keys hold when not written (the config schema's defaults).
_HTTP_DEFAULTS = {"auth": "none", "headers": {}, "allow_addresses": []}


def db_connectors_from(config: Mapping[str, Any]) -> dict[str, DbConnector]:
    """The database connectors (kind postgres, mysql, redis) of the app config's
    ``connectors`` mapping; ConfigError names the key (and never quotes a URL)."""
    out = {}
    for name, spec in config.items():
        data = spec if isinstance(spec, Mapping) else (
            spec.model_dump() if hasattr(spec, "model_dump") else None)
        if data is None or data.get("kind", "http") == "http":
            continue
        data = {k: v for k, v in data.items() if _HTTP_DEFAULTS.get(k, ...) != v}
        out[name] = db_connector(name, data)
    return out
