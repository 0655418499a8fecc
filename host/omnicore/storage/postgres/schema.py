"""Versioned migrations of the PostgreSQL schema (append only; never edit a shipped step).

Expand then contract (omnicore.storage.migration, specs/host.md "Upgrades"): a step only adds,
so a host of the previous release keeps running on the schema it leaves; a step that drops or
changes what an older host reads is marked ``contract=True``, ships one release after the
release that stopped reading it, and raises :attr:`Step.runs_from` to that release. Each
step's ``runs_from`` is recorded in ``omnicore_schema`` beside the version (since step 11), so
a host of an older release can tell whether it may run on a newer schema.

Text keys use the ``C`` collation so that ``ORDER BY key`` sorts by UTF-8 bytes, as the
interface promises and SQLite does; timestamps are epoch seconds in ``double precision``,
the same unit the interface speaks.
"""

from __future__ import annotations

from omnicore.storage.migration import Step

__all__ = ["LIVENESS_KEY", "LOCK_ID", "MIGRATIONS", "RUNS_FROM_SINCE", "SCHEMA_VERSION",
           "SETTINGS_LOCK", "STEPS"]

#: The advisory lock that serialises migrations across instances ("omnicore" in hex).
LOCK_ID = 0x6F6D6E69636F7265
#: The transaction lock that numbers plugin settings changes in commit order ("opsettings").
SETTINGS_LOCK = 0x6F7073657474696E
#: The first key of the two-key advisory locks that say an instance is alive ("omni").
LIVENESS_KEY = 0x6F6D6E69

_V1_KV = """
CREATE TABLE kv (
    plugin text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    size integer NOT NULL,
    PRIMARY KEY (plugin, key)
);
CREATE TABLE kv_usage (
    plugin text COLLATE "C" PRIMARY KEY,
    keys integer NOT NULL,
    bytes bigint NOT NULL
);
"""

_V2_JOBS = """
CREATE TABLE tasks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plugin text NOT NULL,
    handler text NOT NULL,
    payload bytea NOT NULL,
    state text NOT NULL,
    attempts integer NOT NULL,
    max_attempts integer NOT NULL,
    backoff_ms bigint NOT NULL,
    run_at double precision NOT NULL,
    created_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    last_error text,
    source text NOT NULL,
    hops integer NOT NULL,
    owner text,
    lease_until double precision
);
CREATE INDEX tasks_due ON tasks (run_at, id) WHERE state = 'queued';
CREATE INDEX tasks_leased ON tasks (lease_until) WHERE state = 'running';
CREATE INDEX tasks_plugin_state ON tasks (plugin, state);
CREATE TABLE schedules (
    plugin text NOT NULL,
    name text NOT NULL,
    next_fire double precision NOT NULL,
    PRIMARY KEY (plugin, name)
);
"""

_V3_EVENTS = """
CREATE TABLE events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic text COLLATE "C" NOT NULL,
    plugin text,
    payload bytea NOT NULL,
    created_at double precision NOT NULL
);
"""

_V4_INSTANCES = """
CREATE TABLE instances (
    runtime_id text PRIMARY KEY,
    slot integer NOT NULL UNIQUE,
    hostname text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    console_url text,
    started_at double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    jobs_held integer NOT NULL DEFAULT 0,
    draining boolean NOT NULL DEFAULT false
);
CREATE SEQUENCE instance_slots AS integer CYCLE;
"""

_V5_MEMORY_VECTORS = """
CREATE TABLE memories (
    id bigint PRIMARY KEY,
    plugin text NOT NULL,
    tier integer NOT NULL,
    text text NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
    meta text,
    importance double precision NOT NULL,
    created_at double precision NOT NULL,
    accessed_at double precision NOT NULL,
    expires_at double precision,
    recalls integer NOT NULL DEFAULT 0,
    has_vector boolean NOT NULL DEFAULT false
);
CREATE INDEX memories_tier ON memories (plugin, tier, importance, accessed_at);
CREATE INDEX memories_expiry ON memories (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX memories_tsv ON memories USING gin (tsv);
CREATE TABLE vector_collections (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plugin text NOT NULL,
    name text NOT NULL,
    dim integer NOT NULL,
    metric text NOT NULL,
    next_label bigint NOT NULL DEFAULT 0,
    generation bigint NOT NULL DEFAULT 0,
    count bigint NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    created_at double precision NOT NULL,
    deletes_from bigint NOT NULL DEFAULT 0,
    UNIQUE (plugin, name)
);
CREATE TABLE vectors (
    coll bigint NOT NULL,
    id text NOT NULL,
    label bigint NOT NULL,
    vec bytea NOT NULL,
    meta text,
    size integer NOT NULL,
    gen bigint NOT NULL,
    PRIMARY KEY (coll, id),
    UNIQUE (coll, label)
);
CREATE INDEX vectors_gen ON vectors (coll, gen);
CREATE TABLE vector_deletes (
    coll bigint NOT NULL,
    label bigint NOT NULL,
    gen bigint NOT NULL,
    PRIMARY KEY (coll, gen)
);
"""

_V6_ACCOUNTS = """
CREATE TABLE secrets (
    name text PRIMARY KEY,
    key_id text NOT NULL,
    nonce bytea NOT NULL,
    ciphertext bytea NOT NULL,
    updated_at double precision NOT NULL
);
CREATE TABLE users (
    name text PRIMARY KEY,
    hash text NOT NULL,
    role text NOT NULL,
    created double precision NOT NULL
);
CREATE TABLE tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest text UNIQUE NOT NULL,
    label text NOT NULL,
    username text NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created double precision NOT NULL,
    last_used double precision
);
CREATE TABLE sessions (
    digest text PRIMARY KEY,
    username text NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf text NOT NULL,
    created double precision NOT NULL,
    expires double precision NOT NULL
);
CREATE TABLE setup_links (digest text PRIMARY KEY, expires double precision NOT NULL);
CREATE TABLE audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at double precision NOT NULL,
    actor text NOT NULL,
    action text COLLATE "C" NOT NULL,
    target text,
    before text,
    after text,
    origin text
);
CREATE INDEX audit_at ON audit (at);
"""

_V7_WORKFLOWS = """
CREATE TABLE wf_versions (hash text PRIMARY KEY, name text NOT NULL,
    definition text NOT NULL, created_at double precision NOT NULL);
CREATE TABLE wf_runs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, workflow text NOT NULL,
    version text NOT NULL, state text NOT NULL, inputs text NOT NULL, trigger text,
    outputs text, error text, concurrency_key text, started_by text NOT NULL,
    parent_run bigint, parent_step text, parent_index integer,
    created_at double precision NOT NULL, started_at double precision,
    finished_at double precision, restarts integer NOT NULL DEFAULT 0);
CREATE INDEX wf_runs_by_workflow ON wf_runs (workflow, state);
CREATE INDEX wf_runs_by_key ON wf_runs (workflow, concurrency_key, state);
CREATE INDEX wf_runs_by_parent ON wf_runs (parent_run) WHERE parent_run IS NOT NULL;
CREATE TABLE wf_steps (seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE, run_id bigint NOT NULL,
    step text NOT NULL, idx integer NOT NULL, state text NOT NULL,
    attempt integer NOT NULL DEFAULT 0, input text, output text, output_ref text,
    output_bytes integer, error text, run_at double precision NOT NULL,
    started_at double precision, finished_at double precision, owner text,
    lease_until double precision, wait text, decided_by text, decided_at double precision,
    PRIMARY KEY (run_id, step, idx));
CREATE INDEX wf_steps_due ON wf_steps (state, run_at);
CREATE TABLE wf_history (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id bigint NOT NULL, at double precision NOT NULL, kind text NOT NULL, step text,
    idx integer, attempt integer, actor text, data text);
CREATE INDEX wf_history_by_run ON wf_history (run_id, id);
CREATE TABLE wf_blobs (hash text PRIMARY KEY, data bytea NOT NULL);
CREATE TABLE wf_triggers (workflow text NOT NULL, name text NOT NULL,
    next_fire double precision NOT NULL, PRIMARY KEY (workflow, name));
"""

# A user was ever created (the setup link is over); signatures of accepted webhook deliveries
# within the replay window (a restart must not make one acceptable again).
_V8_CONSOLE_FACTS_WEBHOOKS = """
CREATE TABLE console_facts (name text PRIMARY KEY, value double precision NOT NULL);
INSERT INTO console_facts SELECT 'had_users', min(created) FROM users HAVING count(*) > 0;
CREATE TABLE wf_webhook_seen (signature text PRIMARY KEY, at double precision NOT NULL);
"""

# The operator's settings per plugin (grants, config, limits, ...), numbered by one change
# sequence that instances follow (omnicore.storage.settings_rows).
_V9_PLUGIN_SETTINGS = """
CREATE TABLE plugin_settings (plugin text PRIMARY KEY, doc text NOT NULL, seq bigint NOT NULL,
    updated_at double precision NOT NULL, updated_by text);
CREATE INDEX plugin_settings_by_seq ON plugin_settings (seq);
"""

# The durable queue row is a job (specs/host.md's glossary), and so is its table: the expand
# half of an expand-then-contract rename, so hosts of this version and the previous one can
# share the database during a rolling upgrade. The table, its indexes, its key and its id
# sequence take the new name (a rename of each is a catalog change: no row is rewritten), and
# a view keeps the old name: a simple view is automatically updatable, so the previous
# version's statements still run through it (INSERT ... RETURNING with the table's identity
# default, the claim's FOR UPDATE SKIP LOCKED, which locks the table's rows, UPDATE, DELETE;
# tests/storage/test_postgres_rename.py runs them). The contract half, a later release's
# step, is `DROP VIEW tasks`, once no host older than this one can share the database. Until
# then a column added to `jobs` needs a default: the previous version inserts without it.
_V10_JOBS_RENAME = """
ALTER TABLE tasks RENAME TO jobs;
ALTER TABLE jobs RENAME CONSTRAINT tasks_pkey TO jobs_pkey;
ALTER INDEX tasks_due RENAME TO jobs_due;
ALTER INDEX tasks_leased RENAME TO jobs_leased;
ALTER INDEX tasks_plugin_state RENAME TO jobs_plugin_state;
ALTER SEQUENCE tasks_id_seq RENAME TO jobs_id_seq;
CREATE VIEW tasks AS SELECT * FROM jobs;
"""

# What each step leaves records the oldest host that runs on it (omnicore.storage.migration):
# a host reads it when the schema is newer than it knows. An expand step: the column's default.
_V11_RUNS_FROM = """
ALTER TABLE omnicore_schema ADD COLUMN runs_from integer NOT NULL DEFAULT 1;
"""

# Instances found dead, kept a day for the Instances page: when each stopped answering, who
# reaped it and what it held (jobs and workflow steps handed on, as JSON arrays).
_V12_INSTANCES_LOST = """
CREATE TABLE instances_lost (runtime_id text PRIMARY KEY, hostname text NOT NULL,
    pid integer NOT NULL, version text NOT NULL, started_at double precision NOT NULL,
    heartbeat_at double precision NOT NULL, lost_at double precision NOT NULL,
    reaped_by text NOT NULL, jobs text NOT NULL, steps text NOT NULL);
CREATE INDEX instances_lost_at ON instances_lost (lost_at);
"""

# OAuth for remote agents (omnicore.oauth): registered clients, users' grants, and the
# SHA-256 of every authorization code and token.
_V13_OAUTH = """
CREATE TABLE oauth_clients (client_id text PRIMARY KEY, doc text NOT NULL,
    created_at double precision NOT NULL);
CREATE TABLE oauth_grants (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id text NOT NULL, client_name text NOT NULL, user_name text NOT NULL,
    resource text NOT NULL, tools text NOT NULL, created_at double precision NOT NULL,
    revoked_at double precision);
CREATE TABLE oauth_codes (hash text PRIMARY KEY, grant_id bigint NOT NULL,
    redirect_uri text NOT NULL, explicit integer NOT NULL, challenge text NOT NULL,
    expires_at double precision NOT NULL, used_at double precision);
CREATE TABLE oauth_tokens (hash text PRIMARY KEY, grant_id bigint NOT NULL, kind text NOT NULL,
    expires_at double precision NOT NULL, revoked_at double precision);
CREATE INDEX oauth_tokens_by_grant ON oauth_tokens (grant_id);
"""

# The host that ran each delivery of a job (space-separated runtime ids), with a default:
# the previous version inserts without it (and through the `tasks` view, whose columns were
# fixed when it was made); the idempotency keys of enqueues through the REST API (a day).
_V14_JOB_RUNS_KEYS = """
ALTER TABLE jobs ADD COLUMN runs text NOT NULL DEFAULT '';
CREATE TABLE job_keys (key text PRIMARY KEY, job_id bigint, digest text NOT NULL,
    created_at double precision NOT NULL);
CREATE INDEX job_keys_by_age ON job_keys (created_at);
"""

# MCP tasks (omnicore.mcp.tasks): each task's owner, job and outcome; and OAuth's
# authorization requests waiting on the consent page, so any host can answer them.
_V15_MCP_TASKS_CONSENTS = """
CREATE TABLE mcp_tasks (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE, owner text NOT NULL, tool text NOT NULL, job_id bigint,
    status text NOT NULL, output bytea, error text, created_at double precision NOT NULL,
    updated_at double precision NOT NULL, expires_at double precision);
CREATE INDEX mcp_tasks_by_owner ON mcp_tasks (owner, seq);
CREATE INDEX mcp_tasks_by_expiry ON mcp_tasks (expires_at);
CREATE TABLE oauth_consents (hash text PRIMARY KEY, client text NOT NULL, params text NOT NULL,
    expires_at double precision NOT NULL);
"""

_V16_JOB_RESULTS = """
ALTER TABLE jobs ADD COLUMN result bytea;
"""

# The plugin catalog (storage/catalog_rows.py): modules by digest in chunks of at most 1 MiB,
# every publish a version, each name's version in force numbered by one change sequence that
# hosts follow; and each instance's plugins as it reports them (the digest it serves of each),
# with a default: a host of the previous version registers without it.
_V17_CATALOG = """
CREATE TABLE plugin_modules (digest text PRIMARY KEY, size bigint NOT NULL,
    chunks integer NOT NULL, created_at double precision NOT NULL);
CREATE TABLE plugin_chunks (digest text NOT NULL, idx integer NOT NULL, data bytea NOT NULL,
    PRIMARY KEY (digest, idx));
CREATE TABLE plugin_versions (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL, number integer NOT NULL, digest text NOT NULL, size bigint NOT NULL,
    sidecar text NOT NULL, published_by text, published_at double precision NOT NULL);
CREATE INDEX plugin_versions_by_name ON plugin_versions (name, id);
CREATE INDEX plugin_versions_by_digest ON plugin_versions (digest);
CREATE TABLE plugin_catalog (name text PRIMARY KEY, version bigint, seq bigint NOT NULL,
    updated_at double precision NOT NULL, updated_by text);
CREATE INDEX plugin_catalog_by_seq ON plugin_catalog (seq);
ALTER TABLE instances ADD COLUMN plugins text NOT NULL DEFAULT '{}';
"""

# A claim limited to the plugins a host serves probes each plugin's oldest due job
# (stores/leases.py): one index seek per plugin, whatever the queue holds of others.
_V18_JOBS_DUE_BY_PLUGIN = """
CREATE INDEX jobs_due_by_plugin ON jobs (plugin, run_at, id) WHERE state = 'queued';
"""

# Where a catalog version came from (an OCI reference) and the signatures published with it
# (JSON, omnicore.oci.signature_to_json), which every host checks against its plugins.trust
# before it loads the module. Defaults: a host of the previous version publishes without them.
_V19_CATALOG_SOURCE_SIGNATURES = """
ALTER TABLE plugin_versions ADD COLUMN source text;
ALTER TABLE plugin_versions ADD COLUMN signatures text NOT NULL DEFAULT '[]';
"""

# A name's version in force pinned (omnicore plugins pin): publishes add versions without
# putting them in force until it is unpinned. A host of the previous version ignores the pin.
_V20_CATALOG_PIN = """
ALTER TABLE plugin_catalog ADD COLUMN pinned_at double precision;
ALTER TABLE plugin_catalog ADD COLUMN pinned_by text;
"""

# The plugin version a job must run on (sha256:<hex>; NULL: any): claimed only by a host
# serving that module (stores/leases.py). A host of the previous version claims such a job
# as any other (it reads no digest) until every host runs this one.
_V21_JOB_DIGEST = """
ALTER TABLE jobs ADD COLUMN digest text;
"""

# The plugin version a workflow step pins (``name@sha256:<hex>``; NULL: any): claimed only by
# a host serving that module (stores/leases.py). A host of the previous version claims such a
# step as any other until every host runs this one.
_V22_STEP_PIN = """
ALTER TABLE wf_steps ADD COLUMN pin text;
"""

# The plugin a workflow's plugin step calls (NULL: a step any host runs): claimed only by a
# host serving it, each plugin's due steps found by one index seek (stores/leases.py). A host
# of the previous version claims any step as before until every host runs this one.
_V23_STEP_PLUGIN = """
ALTER TABLE wf_steps ADD COLUMN plugin text;
CREATE INDEX wf_steps_due_by_plugin ON wf_steps (plugin, run_at, seq) WHERE state = 'queued';
"""

# The hops of the work that published an event, so a host delivering another host's event
# counts on from there (capabilities.events.max_hops holds across hosts). A host of the
# previous version appends without it: its events count as one hop, as they did.
_V24_EVENT_HOPS = """
ALTER TABLE events ADD COLUMN hops integer NOT NULL DEFAULT 1;
"""

# The W3C traceparent of the span that queued a job (NULL: tracing was off), so its run
# continues that trace on whichever host claims it (omnicore.telemetry). A host of the
# previous version inserts without it and runs such a job as a trace of its own.
_V25_JOB_TRACE = """
ALTER TABLE jobs ADD COLUMN trace text;
"""

# The W3C traceparent of the span that started a workflow run (NULL: tracing was off), so its
# steps continue that trace on whichever host runs them. A host of the previous version
# starts runs without it; their steps are traces of their own.
_V26_RUN_TRACE = """
ALTER TABLE wf_runs ADD COLUMN trace text;
"""

#: Step ``i`` takes the schema from version ``i`` to ``i + 1``. No step up to 24 drops what an
#: older host reads (step 10's rename leaves a view under the old name), so a host of any
#: schema runs on them all; the first contract step (``DROP VIEW tasks``) will raise it.
STEPS: tuple[Step, ...] = (
    Step(_V1_KV, "kv and kv_usage", runs_from=1),
    Step(_V2_JOBS, "the job queue (tasks) and schedules", runs_from=1),
    Step(_V3_EVENTS, "the event log", runs_from=1),
    Step(_V4_INSTANCES, "the instances of a cluster", runs_from=1),
    Step(_V5_MEMORY_VECTORS, "memory and vector rows", runs_from=1),
    Step(_V6_ACCOUNTS, "secrets, the console's accounts and the audit log", runs_from=1),
    Step(_V7_WORKFLOWS, "workflow runs, steps, history and triggers", runs_from=1),
    Step(_V8_CONSOLE_FACTS_WEBHOOKS, "console facts and seen webhook deliveries", runs_from=1),
    Step(_V9_PLUGIN_SETTINGS, "the operator's plugin settings", runs_from=1),
    Step(_V10_JOBS_RENAME, "tasks renamed jobs, a view keeps the old name", runs_from=1),
    Step(_V11_RUNS_FROM, "the schema records the oldest host that runs on it", runs_from=1),
    Step(_V12_INSTANCES_LOST, "instances found dead, kept a day", runs_from=1),
    Step(_V13_OAUTH, "OAuth clients, grants, codes and tokens for remote agents", runs_from=1),
    Step(_V14_JOB_RUNS_KEYS, "who ran each delivery of a job; REST enqueue idempotency keys",
         runs_from=1),
    Step(_V15_MCP_TASKS_CONSENTS, "MCP tasks; OAuth consents waiting for an answer",
         runs_from=1),
    Step(_V16_JOB_RESULTS, "what a job's handler answered", runs_from=1),
    Step(_V17_CATALOG, "the plugin catalog; the plugins each instance reports", runs_from=1),
    Step(_V18_JOBS_DUE_BY_PLUGIN, "each plugin's due jobs in order, for claims by plugin",
         runs_from=1),
    Step(_V19_CATALOG_SOURCE_SIGNATURES, "a catalog version's source and signatures",
         runs_from=1),
    Step(_V20_CATALOG_PIN, "a catalog name's version in force pinned", runs_from=1),
    Step(_V21_JOB_DIGEST, "the plugin version a job must run on", runs_from=1),
    Step(_V22_STEP_PIN, "the plugin version a workflow step must run on", runs_from=1),
    Step(_V23_STEP_PLUGIN, "the plugin a workflow step calls, for claims by plugin",
         runs_from=1),
    Step(_V24_EVENT_HOPS, "the hops of the work that published an event", runs_from=1),
    Step(_V25_JOB_TRACE, "the trace a job continues", runs_from=1),
    Step(_V26_RUN_TRACE, "the trace a workflow run's steps continue", runs_from=1),
)
#: The SQL of each step (what older code and tests import).
MIGRATIONS: tuple[str, ...] = tuple(step.sql for step in STEPS)
SCHEMA_VERSION = len(STEPS)
#: The first version whose ``omnicore_schema`` has ``runs_from``.
RUNS_FROM_SINCE = 11
