"""The config model: every key, its type and its default, documented in one place.

``omnicore config show`` prints the effective values with their sources; ``specs/host.md``
mirrors this table. Paths are resolved against the config file's folder (or the working
directory when there is no file) by the loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from omnicore.config.bridges import BridgeConfig
from omnicore.config.retention import RetentionConfig
from omnicore.config.routes import RouteConfig, ServeConfig
from omnicore.config.sandbox import LIMIT_KEYS, CircuitConfig, LimitsConfig, SandboxConfig
from omnicore.config.strict import Strict
from omnicore.config.telemetry import TelemetryConfig

__all__ = [
    "LIMIT_KEYS",
    "RENAMED",
    "BridgeConfig",
    "CapabilitiesConfig",
    "CatalogConfig",
    "CircuitConfig",
    "ClusterConfig",
    "ConnectorConfig",
    "ConsoleConfig",
    "JobsConfig",
    "LimitsConfig",
    "LogConfig",
    "McpConfig",
    "OmniConfig",
    "PluginConfig",
    "RegistryConfig",
    "RetentionConfig",
    "RouteConfig",
    "SandboxConfig",
    "ServeConfig",
    "StorageConfig",
    "TasksConfig",
    "TelemetryConfig",
    "TrustConfig",
    "WorkflowsConfig",
    "masked_url",
]


class LogConfig(Strict):
    """``log.*``."""

    level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="minimum level of omnicore's log records"
    )
    format: Literal["text", "json"] = Field(
        default="text", description="text for people, json for collectors (adapters may pick json)"
    )


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (logs, errors, ``config show``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class StorageConfig(Strict):
    """``storage.*``: the app's database (``<data_dir>/omnicore.db``, or ``url``)."""

    url: str | None = Field(
        default=None,
        description="a shared database for several hosts, e.g. "
                    "postgresql://omnicore@db:5432/omnicore (env OMNICORE_STORAGE__URL); "
                    "unset: the embedded SQLite file in data_dir",
    )

    @field_validator("url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("storage.url must be a postgresql:// URL (unset: embedded SQLite)")
        return value

    synchronous: Literal["normal", "full"] = Field(
        default="normal",
        description="normal: a commit survives a host crash or kill -9 (WAL); full: also a "
                    "power loss, at the cost of a disk flush per write",
    )
    migrate: bool = Field(
        default=True,
        description="apply pending schema migrations at start; false: refuse to start on an "
                    "older schema and leave migrating to `omnicore migrate` (a pre-deploy "
                    "job: specs/host.md \"Upgrades\")",
    )


class ClusterConfig(Strict):
    """``cluster.*``: several hosts on one ``storage.url`` (omnicore.cluster)."""

    heartbeat_s: float = Field(default=1.0, gt=0, le=60,
                               description="how often this host tells the others it runs")
    dead_after_s: float = Field(
        default=3.0, gt=0, le=3600,
        description="a host silent this long is dead: its job and workflow-step leases go "
                    "back to the queue at once (PostgreSQL also notices a closed connection "
                    "sooner)")

    @model_validator(mode="after")
    def _beats_before_death(self) -> ClusterConfig:
        if self.dead_after_s < 2 * self.heartbeat_s:
            raise ValueError(f"cluster.dead_after_s ({self.dead_after_s}) must be at least "
                             f"twice cluster.heartbeat_s ({self.heartbeat_s}): one late "
                             "heartbeat must not make a live host dead")
        return self


class CatalogConfig(Strict):
    """``catalog.*``: the plugin catalog in the app's store (omnicore.plugins.catalog,
    specs/catalog.md)."""

    follow: bool = Field(
        default=True,
        description="load the plugins the catalog names, over the plugin folder's (false: "
                    "this host serves its folder only, and claims only that work)")
    poll_s: float = Field(default=1.0, gt=0, le=60,
                          description="how often the catalog's changes are read when no "
                                      "NOTIFY arrives (SQLite; a fallback on PostgreSQL)")
    max_module_bytes: int = Field(default=64 * 1024 * 1024, gt=0, le=1 << 30,
                                  description="the largest module the catalog takes")
    keep_versions: int = Field(default=20, gt=0, le=1000,
                               description="versions kept per plugin for a rollback (the one "
                                           "in force always)")
    refuse_older: bool = Field(
        default=False,
        description="refuse a publish of a module older than the one in force (a digest "
                    "among the plugin's kept versions published before it); off: it is "
                    "published, and its answer and audit entry say it is older. A host with "
                    "it on also refuses at load to put such a version in force (published "
                    "elsewhere) and keeps serving what it serves; a rollback is applied")
    sources: list[str] = Field(
        default_factory=list,
        description="OCI references (oci://REGISTRY/REPO:TAG or @sha256:...) each host "
                    "publishes to the catalog at start and when a config reload adds it, "
                    "pulled with registry.* and plugins.trust, unless the catalog keeps that "
                    "module already: plugins "
                    "declared in config (a Kubernetes ConfigMap) instead of baked into the "
                    "image")

    @field_validator("sources")
    @classmethod
    def _oci_only(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not ref.startswith("oci://"):
                raise ValueError(f"catalog.sources: {ref[:120]!r} is not an OCI reference "
                                 "(oci://REGISTRY/REPO:TAG or oci://REGISTRY/REPO@sha256:...)")
        return value

    uploads: Literal["auto", "catalog", "folder"] = Field(
        default="auto",
        description="where the console's plugin upload goes: catalog (published, every host "
                    "of the store serves it; needs follow), folder (this host's plugins_dir), "
                    "auto: the catalog when storage.url is set (hosts share the store), else "
                    "the folder")


class PasswordHashConfig(Strict):
    """``console.password_hash.*``: the argon2id cost of a console password (argon2-cffi's
    defaults, RFC 9106's second recommendation). A sign-in whose password was hashed with
    other settings rehashes it with these, so raising them reaches every user who signs in."""

    time_cost: int = Field(default=3, ge=1, le=100, description="argon2 passes over memory")
    memory_kib: int = Field(default=64 * 1024, ge=8, le=4 * 1024 * 1024,
                            description="argon2 memory per hash, KiB (each sign-in takes it)")
    parallelism: int = Field(default=4, ge=1, le=64, description="argon2 lanes")

    @model_validator(mode="after")
    def _memory_covers_the_lanes(self) -> PasswordHashConfig:
        if self.memory_kib < 8 * self.parallelism:
            raise ValueError(f"memory_kib must be at least 8 per lane ({8 * self.parallelism} "
                             f"for parallelism {self.parallelism}), got {self.memory_kib}")
        return self


class ConsoleConfig(Strict):
    """``console.*``: the web console and REST API served by ``omnicore run``."""

    enabled: bool = Field(default=True, description="serve the console (omnicore run)")
    host: str = Field(default="127.0.0.1", min_length=1,
                      description="bind address; loopback unless you mean to expose it")
    port: int = Field(default=8470, ge=0, le=65535, description="TCP port; 0 picks a free one")
    auth: bool = Field(
        default=True,
        description="require sign-in; false is refused unless host is a loopback address",
    )
    session_ttl_s: int = Field(default=12 * 3600, gt=0, description="signed-in session lifetime")
    max_upload_bytes: int = Field(default=64 * 1024 * 1024, gt=0,
                                  description="largest .wasm accepted by an upload")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="more names the console answers to in Host: (DNS rebinding guard; by "
                    "default localhost, 127.0.0.1, ::1 and the bound address; '*' any)")
    secure_cookies: bool | Literal["auto"] = Field(
        default="auto", description="Secure cookies; auto: when https reaches the console, "
                                    "as a trusted proxy's X-Forwarded-Proto says")
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="addresses (or networks) whose X-Forwarded-Proto is believed")
    body_timeout_s: float = Field(default=30.0, gt=0,
                                  description="time a request body has to arrive, plus 1 s "
                                              "per MiB of its size")
    password_hash: PasswordHashConfig = Field(default_factory=PasswordHashConfig,
                                              description="the argon2id cost of passwords")


class PluginConfig(Strict):
    """``plugins.<name>.*``: what the operator grants and configures for one plugin."""

    grants: list[str] | dict[str, dict[str, Any]] = Field(
        default_factory=list,
        description="capability names, or name -> options (e.g. http: {hosts: [...]})",
    )
    config: dict[str, Any] = Field(default_factory=dict, description="the plugin's own config")
    limits: dict[str, int | str | None] = Field(
        default_factory=dict, description="overrides of sandbox.limits"
    )
    enabled: bool = Field(default=True, description="load this plugin")

    @field_validator("grants", mode="before")
    @classmethod
    def _grant_options(cls, value: Any) -> Any:
        # `kv:` with nothing after it is YAML null; it means "granted, no options".
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if not isinstance(v, dict | None):
                    raise ValueError(f"options of grant {k!r} must be a mapping, got {v!r}")
                out[k] = {} if v is None else v
            return out
        if isinstance(value, list):
            bad = [v for v in value if not isinstance(v, str)]
            if bad:
                raise ValueError(f"capability names must be strings, got {bad[0]!r}")
            return value
        raise ValueError("must be a list of capability names ([log, kv]) or a mapping of "
                         "name to options ({http: {hosts: [example.com]}})")

    @field_validator("limits")
    @classmethod
    def _known_limits(cls, value: dict[str, int | str | None]) -> dict[str, int | str | None]:
        import difflib

        out = dict(value)
        for key, item in value.items():
            if key not in LIMIT_KEYS:
                near = difflib.get_close_matches(key, LIMIT_KEYS, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f" (one of {LIMIT_KEYS})"
                raise ValueError(f"unknown limit {key!r}{hint}")
            # Only isolation is a word; a number written as a string (an environment
            # variable) is still the number.
            if key != "isolation" and isinstance(item, str) and item.isdecimal():
                out[key] = int(item)
        return out

    def grant_names(self) -> list[str]:
        """The granted capability names, whichever form ``grants`` was written in."""
        return list(self.grants)


class TrustConfig(Strict):
    """``plugins.trust.*``: the signatures a plugin module needs before a host takes it
    (omnicore.oci.trust, specs/security.md "Signed plugins"). Written among the plugins in
    the file, ``plugins: {trust: {keys: [...], require: true}}``, so no plugin is called
    ``trust``."""

    keys: list[str] = Field(
        default_factory=list,
        description="trusted public keys (PEM, as cosign.pub): files relative to the app "
                    "folder, or the PEM text")
    require: bool = Field(
        default=False,
        description="refuse a module no trusted key signed: at publish, at pull and at every "
                    "host's load; and a sidecar no trusted key covers (the signed artifact's "
                    "own, or its file signed)")
    allow_unsigned_sidecar: bool = Field(
        default=False,
        description="let an explicit override (`plugins publish --unsigned-sidecar REASON`, "
                    "audited) apply a sidecar no trusted key covers; off: such a publish is "
                    "refused, and this host refuses such a version at load")


class RegistryConfig(Strict):
    """``registry.*``: how OCI registries are reached (omnicore.oci, specs/registry.md).
    Credentials come from the Docker config file."""

    ca_file: Path | None = Field(
        default=None, description="PEM CA certificates trusted beside the system's (a private "
                                  "registry's CA)")
    plain_http: list[str] = Field(
        default_factory=list,
        description="registries (host or host:port) reached over plain HTTP; a loopback one "
                    "is too, unless ca_file is set")
    timeout_s: float = Field(default=30.0, gt=0, le=3600,
                             description="the longest one wait on a registry may take "
                                         "(connecting, each read)")
    deadline_s: float = Field(default=600.0, gt=0, le=86400,
                              description="the longest one push, pull, sign or verify may take")
    max_manifest_bytes: int = Field(default=4 * 1024 * 1024, gt=0, le=64 * 1024 * 1024,
                                    description="the largest manifest a pull reads")
    max_blob_bytes: int = Field(default=256 * 1024 * 1024, gt=0, le=1 << 32,
                                description="the largest module a pull downloads")
    docker_config: Path | None = Field(
        default=None, description="the Docker config file credentials are read from (default "
                                  "$DOCKER_CONFIG/config.json, else ~/.docker/config.json)")


class ConnectorConfig(Strict):
    """``connectors.<name>.*``: an upstream plugins call by name, an API (``omnicore:http``,
    kind ``http``) or a database (``omnicore:sql``, ``omnicore:redis``); the host adds the
    credentials, so the plugin never sees them. Which keys go with which kind is checked when
    the connectors are built (``egress.connectors_from``, ``egress.db.db_connector``)."""

    kind: Literal["http", "postgres", "mysql", "redis"] = Field(
        default="http", description="http (base_url), postgres, mysql or redis (url)")
    base_url: str | None = Field(default=None, min_length=1,
                                 description="http(s) URL the connector's paths join")
    url: str | None = Field(default=None, min_length=1,
                            description="database URL, without its password")
    url_secret: str | None = Field(default=None,
                                   description="the whole database URL from this secret")
    read_only: bool | None = Field(default=None, description="the server refuses writes")
    pool_size: int | None = Field(default=None, gt=0, description="connections (4)")
    statement_timeout_ms: int | None = Field(default=None, gt=0,
                                             description="per statement (10000)")
    max_rows: int | None = Field(default=None, gt=0, description="rows per result (10000)")
    max_result_bytes: int | None = Field(default=None, gt=0,
                                         description="bytes per result (8 MiB; redis 1 MiB)")
    max_transactions: int | None = Field(default=None, gt=0,
                                         description="open transactions per call (2)")
    key_prefix: str | None = Field(default=None, description="redis: every key's prefix "
                                                               "(omnicore:{plugin}:)")
    statements: dict[str, Any] | None = Field(
        default=None, description="postgres/mysql: statement kinds allowed beyond reads and "
                                  "row changes, {allow: [kind], plugins: {plugin: [kind]}} "
                                  "(specs/abi.md §4.10, Statements)")
    plugins: dict[str, dict[str, str]] | None = Field(
        default=None, description="postgres/mysql: a database role per plugin, {plugin: {user: "
                                  "ROLE, secret: SECRET}}; the plugin's connections log in as "
                                  "ROLE and serve no other plugin")
    privileges: Literal["refuse", "warn", "strict"] | None = Field(
        default=None, description="postgres/mysql: a role's powers over the server at its "
                                  "first connection: refuse (the default; what it owns is "
                                  "logged), warn, or strict (what it owns refused too)")
    password_to_unverified_server: Literal["refuse", "allow"] | None = Field(
        default=None, description="postgres/mysql: whether the password in clear (PostgreSQL "
                                  "password, MariaDB mysql_clear_password) or its MD5 goes to "
                                  "a server TLS did not verify (sslmode=verify-full): refuse "
                                  "(the default) or allow")
    auth: Literal["none", "bearer", "basic", "header", "query"] = Field(
        default="none", description="how the secret is sent")
    secret: str | None = Field(default=None, description="the secret's name (omnicore secrets)")
    username: str | None = Field(default=None, description="basic auth user (secret: password)")
    header: str | None = Field(default=None, description="header auth: the header's name")
    param: str | None = Field(default=None, description="query auth: the parameter's name")
    headers: dict[str, str] = Field(default_factory=dict, description="fixed extra headers")
    allow_addresses: list[str] = Field(
        default_factory=list,
        description="private networks (CIDR) the base URL's host may resolve into")


class McpConfig(Strict):
    """``mcp.*``: which plugin handlers ``omnicore mcp`` and ``/mcp`` serve as tools."""

    expose: list[str] = Field(
        default_factory=list,
        description="PLUGIN/HANDLER patterns served as MCP tools (globs: greeter/*); none by "
                    "default")
    resources: bool = Field(
        default=False,
        description="serve each plugin's memories and vector collections as read-only MCP "
                    "resources (a sidecar's mcp.resources decides for its plugin)")
    oauth_loopback_client_ids: bool = Field(
        default=False,
        description="accept OAuth client ids that are http://127.0.0.1 URLs of client metadata "
                    "documents (local agents and tests); otherwise https URLs only")

    @field_validator("expose")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for entry in value:
            plugin, slash, handler = entry.partition("/")
            if not (plugin and slash and handler):
                raise ValueError(f"expose entry {entry!r} must be PLUGIN/HANDLER "
                                 "(either may be a glob: 'greeter/*')")
        return value


class WorkflowsConfig(Strict):
    """``workflows.*``: the workflow service (omnicore.workflows, specs/workflows.md)."""

    dir: Path = Field(default=Path("workflows"), description="the watched workflows folder")
    watch: bool = Field(default=True, description="re-read the folder every poll_s")
    workers: int = Field(default=4, gt=0, le=256, description="step worker threads")
    lease_s: float = Field(default=30.0, gt=0, description="a running step's lease (renewed)")
    poll_s: float = Field(default=1.0, gt=0, description="idle poll; folder and trigger check")
    max_output_bytes: int = Field(default=16 << 20, gt=0,
                                  description="largest step output (JSON bytes)")
    inline_output_bytes: int = Field(default=64 << 10, ge=0,
                                     description="larger outputs are stored once, by reference")
    max_items: int = Field(default=10_000, gt=0, description="largest for_each list")
    webhook_window_s: int = Field(default=300, gt=0,
                                  description="a webhook signature's replay window")


def _not_bool(value: Any) -> Any:
    # YAML `true` is a mistake for a count, not 1.
    if isinstance(value, bool):
        raise ValueError("must be a positive integer, not a boolean")
    return value


_Count = Annotated[int, BeforeValidator(_not_bool), Field(gt=0)]


class JobsConfig(Strict):
    """``capabilities.jobs.*`` (formerly ``capabilities.tasks``, still read): the durable job
    service (``omnicore.jobs``) and the defaults of a ``tasks`` grant (a grant's own options
    override the last five per plugin)."""

    workers: _Count = Field(default=2, le=256, description="job worker threads")
    lease_s: float = Field(default=30.0, gt=0,
                           description="a running job's lease (renewed; expired: due again)")
    poll_s: float = Field(default=1.0, gt=0, description="idle poll of the queue")
    misfire_grace_s: float = Field(
        default=5.0, ge=0, description="how late a fire may be before catch_up: none skips it")
    max_backoff_ms: _Count = Field(default=300_000, description="the retry backoff's cap")
    schedules: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="plugin -> schedules added by the operator, as in the manifest")
    max_queued: _Count = Field(default=1000, description="a plugin's queued + running jobs")
    max_attempts: _Count = Field(default=5, description="deliveries before a job is dead")
    backoff_ms: _Count = Field(default=1000, description="first retry's backoff (doubles)")
    max_payload_bytes: _Count = Field(default=1024 * 1024, description="largest job payload")
    max_delay_ms: _Count = Field(default=30 * 24 * 3600 * 1000,
                                 description="longest delay a plugin may ask for")

    @field_validator("schedules", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        # `schedules:` with nothing after it, or `tp:` with no list, is YAML null.
        if isinstance(value, dict):
            return {k: [] if v is None else v for k, v in value.items()}
        return {} if value is None else value


#: The durable queue's options before its rows were called jobs (specs/host.md's glossary).
TasksConfig = JobsConfig

#: Sections renamed, old dotted path -> new (same parent): a file, env variable or override
#: that still uses the old name loads, with one deprecation line (config.loader).
RENAMED: dict[tuple[str, ...], tuple[str, ...]] = {
    ("capabilities", "tasks"): ("capabilities", "jobs"),
}


class CapabilitiesConfig(BaseModel):
    """``capabilities.<name>.*``: host-side options per capability. ``jobs`` (the job service
    and the ``tasks`` grant's defaults) is typed here; another capability's section (built-in
    or an extension's) is validated by it."""

    model_config = ConfigDict(extra="allow", validate_default=True)

    jobs: JobsConfig = Field(default_factory=lambda: JobsConfig())

    @property
    def tasks(self) -> JobsConfig:
        """The old name of :attr:`jobs`."""
        return self.jobs

    @model_validator(mode="after")
    def _sections_are_mappings(self) -> CapabilitiesConfig:
        for name, value in (self.model_extra or {}).items():
            if not isinstance(value, dict):
                raise ValueError(f"capabilities.{name} must be a mapping of options, "
                                 f"got {value!r}")
        return self

    def get(self, name: str, default: Any = None) -> Any:
        """The options of capability ``name`` (its model for a typed one), or ``default``."""
        if name == "tasks":  # the `tasks` grant's defaults are the job service's options
            return self.jobs
        if name in type(self).model_fields:
            return getattr(self, name)
        return (self.model_extra or {}).get(name, default)


class OmniConfig(Strict):
    """The whole effective configuration of one app."""

    name: str = Field(default="omnicore", min_length=1, description="app name")
    environment: Literal["local", "container", "kubernetes", "cloud", "edge"] | None = Field(
        default=None, description="force the environment adapter; detected when unset"
    )
    data_dir: Path = Field(default=Path(".omnicore"), description="SQLite files, caches, indexes")
    plugins_dir: Path = Field(default=Path("plugins"), description="the watched plugin folder")
    log: LogConfig = Field(default_factory=lambda: LogConfig())
    workers: int = Field(default=4, gt=0, description="TaskEngine workers (adapter: CPU quota)")
    shutdown_grace_s: float = Field(
        default=10.0, ge=0, description="grace for running tasks on stop"
    )
    sandbox: SandboxConfig = Field(default_factory=lambda: SandboxConfig())
    storage: StorageConfig = Field(default_factory=lambda: StorageConfig())
    cluster: ClusterConfig = Field(default_factory=lambda: ClusterConfig())
    catalog: CatalogConfig = Field(default_factory=lambda: CatalogConfig())
    console: ConsoleConfig = Field(default_factory=lambda: ConsoleConfig())
    plugins: dict[str, PluginConfig] = Field(
        default_factory=dict, description="per-plugin grants, config, limits"
    )
    capabilities: CapabilitiesConfig = Field(
        default_factory=lambda: CapabilitiesConfig(),
        description="per-capability host options (kv quota, job workers...)",
    )
    connectors: dict[str, ConnectorConfig] = Field(
        default_factory=dict,
        description="named upstream APIs and databases with credentials (omnicore:http, sql, "
                    "redis)"
    )
    bridges: dict[str, BridgeConfig] = Field(
        default_factory=dict,
        description="message brokers (NATS JetStream, Redis Streams, MQTT 5) bridged to the "
                    "event bus"
    )
    workflows: WorkflowsConfig = Field(default_factory=lambda: WorkflowsConfig())
    mcp: McpConfig = Field(default_factory=lambda: McpConfig())
    serve: ServeConfig = Field(default_factory=lambda: ServeConfig(),
                               description="plugin handlers served as HTTP routes")
    registry: RegistryConfig = Field(default_factory=lambda: RegistryConfig())
    retention: RetentionConfig = Field(default_factory=lambda: RetentionConfig())
    telemetry: TelemetryConfig = Field(default_factory=lambda: TelemetryConfig())
    trust: TrustConfig = Field(default_factory=lambda: TrustConfig(),
                               description="plugins.trust in the file: the signatures a "
                                           "module needs")

    @model_validator(mode="before")
    @classmethod
    def _trust_among_plugins(cls, data: Any) -> Any:
        # `plugins.trust` is a policy about plugins, not one plugin's settings.
        if isinstance(data, dict) and isinstance(data.get("plugins"), dict) \
                and "trust" in data["plugins"]:
            plugins = dict(data["plugins"])
            data = {**data, "plugins": plugins, "trust": plugins.pop("trust")}
        return data

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def source_of(self, key: str) -> str:
        """Where the value of dotted ``key`` came from: default, adapter, file, env, override."""
        parts = key.split(".")
        for old, new in RENAMED.items():
            if tuple(parts[:len(old)]) == old:
                parts[:len(old)] = new
        while parts:
            src = self._sources.get(".".join(parts))
            if src is not None:
                return src
            parts.pop()
        return "default"

    def renamed(self, name: str) -> OmniConfig:
        """This config with ``name`` as an override (what ``OmniApp(name, config=...)`` runs
        on); every other key keeps its value and its source."""
        copy = self.model_copy(update={"name": name})
        copy._sources = {**self._sources, "name": "override"}
        return copy

    @property
    def sources(self) -> dict[str, str]:
        """Dotted key → source, for every key that did not come from the defaults."""
        return dict(self._sources)
