"""Versioned migrations of the PostgreSQL schema (append only; never edit a shipped step).

Text keys use the ``C`` collation so that ``ORDER BY key`` sorts by UTF-8 bytes, as the
interface promises and SQLite does; timestamps are epoch seconds in ``double precision``,
the same unit the interface speaks.
"""

from __future__ import annotations

__all__ = ["LIVENESS_KEY", "LOCK_ID", "MIGRATIONS", "SCHEMA_VERSION", "SETTINGS_LOCK"]

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

# The host that ran each delivery of a job (space-separated runtime ids), with a default:
# the previous version inserts without it (and through the `tasks` view, whose columns were
# fixed when it was made); the idempotency keys of enqueues through the REST API (a day).
_V11_JOB_RUNS_KEYS = """
ALTER TABLE jobs ADD COLUMN runs text NOT NULL DEFAULT '';
CREATE TABLE job_keys (key text PRIMARY KEY, job_id bigint, digest text NOT NULL,
    created_at double precision NOT NULL);
CREATE INDEX job_keys_by_age ON job_keys (created_at);
"""

#: Step ``i`` takes the schema from version ``i`` to ``i + 1``.
MIGRATIONS: tuple[str, ...] = (_V1_KV, _V2_JOBS, _V3_EVENTS, _V4_INSTANCES,
                               _V5_MEMORY_VECTORS, _V6_ACCOUNTS, _V7_WORKFLOWS,
                               _V8_CONSOLE_FACTS_WEBHOOKS, _V9_PLUGIN_SETTINGS,
                               _V10_JOBS_RENAME, _V11_JOB_RUNS_KEYS)
SCHEMA_VERSION = len(MIGRATIONS)
