//! Unit-test handlers natively with `cargo test` (this module exists only on non-wasm targets).
//!
//! The SDK's host functions run in-process here: `log`, `config`, `kv`, `secrets`, `events`
//! and `tasks` behave as specs/abi.md §4 says, `http` calls the closure given to [`on_http`],
//! `sql` calls the closure given to [`on_sql`] (canned rows: no database runs), `redis` is an
//! in-memory Redis with the host's command list and key prefix ([`redis_keys`]), and `memory`
//! and `vectors` answer `UNAVAILABLE` (test those through omnicore itself). State
//! is per thread, and cargo runs each test on its own thread, so tests do not see each other.
//!
//! ```
//! use omnicore::testing;
//! fn greet(input: &[u8]) -> omnicore::Result<String> {
//!     omnicore::info!("hi");
//!     Ok(format!("{}, {}!", omnicore::config::get_or("greeting", "Hello"),
//!                String::from_utf8_lossy(input)))
//! }
//! testing::set_config(r#"{"greeting": "Hej"}"#);
//! assert_eq!(testing::call(greet, b"Ada").unwrap(), b"Hej, Ada!");
//! assert_eq!(testing::logs(), vec![(omnicore::log::Level::Info, "hi".to_string())]);
//! ```

use std::collections::BTreeMap;

use crate::error::Error;
use crate::log::Level;
use crate::native::with;

/// Calls a bytes handler the way the exported handler does.
pub fn call<F, O>(handler: F, input: &[u8]) -> Result<Vec<u8>, Error>
where
    F: FnOnce(&[u8]) -> Result<O, Error>,
    O: crate::Output,
{
    crate::__rt::run_bytes(input, handler)
}

/// Calls a JSON handler the way the exported handler does: `input` is the raw request, so
/// malformed JSON gets the same `invalid JSON input: ...` error the host would see.
#[cfg(feature = "json")]
pub fn call_json<I, O, F>(handler: F, input: &[u8]) -> Result<Vec<u8>, Error>
where
    I: serde::de::DeserializeOwned,
    O: serde::Serialize,
    F: FnOnce(I) -> Result<O, Error>,
{
    crate::__rt::run_json(input, handler)
}

/// Forgets all state: config, logs, kv, secrets, events, tasks, the HTTP and SQL fakes and
/// the Redis fake's data.
pub fn reset() {
    with(|s| *s = Default::default());
}

/// Sets the plugin's config section from a JSON object. Panics on invalid JSON.
pub fn set_config(json: &str) {
    let value = crate::native::parse_config(json)
        .unwrap_or_else(|e| panic!("testing::set_config: invalid JSON: {}", e));
    with(|s| s.config = Some(value));
}

/// Keeps log lines at `level` and above (default [`Level::Info`], like the host).
pub fn set_log_level(level: Level) {
    with(|s| s.min_level = Some(level));
}

/// The log lines kept so far.
pub fn logs() -> Vec<(Level, String)> {
    with(|s| s.logs.clone())
}

/// The key-value store's contents.
pub fn kv() -> BTreeMap<String, Vec<u8>> {
    with(|s| s.kv.clone())
}

/// Exposes secret `name` with `value` (`None`: exposed but not set). Unexposed names are
/// `DENIED`.
pub fn set_secret(name: &str, value: Option<&[u8]>) {
    with(|s| {
        s.secrets
            .insert(name.to_string(), value.map(<[u8]>::to_vec))
    });
}

/// Events published so far: `(topic, payload)` (without the host's `plugin.<name>.` prefix).
pub fn events() -> Vec<(String, Vec<u8>)> {
    with(|s| s.events.clone())
}

/// A task enqueued with [`crate::tasks::enqueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The task id.
    pub id: i64,
    /// The handler the host would call.
    pub handler: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The requested delay.
    pub delay_ms: i64,
    /// Whether it was cancelled.
    pub cancelled: bool,
}

/// Tasks enqueued so far, by id.
pub fn tasks() -> Vec<Task> {
    with(|s| {
        s.tasks
            .iter()
            .map(|(id, (handler, payload, delay_ms, cancelled))| Task {
                id: *id,
                handler: handler.clone(),
                payload: payload.clone(),
                delay_ms: *delay_ms,
                cancelled: *cancelled,
            })
            .collect()
    })
}

/// Answers [`crate::http::Request::send`]: the closure gets the request as the JSON the host
/// would receive (`{"method", "url" | "connector"+"path", "headers", ...}`) and the body, and
/// returns `(status, headers, body)` or an error message (start it with a status name, such
/// as `"DENIED: ..."`, to set [`Error::status`]).
pub fn on_http<F>(handler: F)
where
    F: Fn(&str, &[u8]) -> Result<(u16, Vec<(String, String)>, Vec<u8>), String> + 'static,
{
    with(|s| s.http = Some(Box::new(handler)));
}

/// What the [`on_sql`] closure answers: rows for `query`, a count for `execute`.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlAnswer {
    /// The rows of a query.
    Rows(crate::sql::Rows),
    /// What an execute changed.
    Executed(crate::sql::Executed),
}

impl From<crate::sql::Rows> for SqlAnswer {
    fn from(rows: crate::sql::Rows) -> SqlAnswer {
        SqlAnswer::Rows(rows)
    }
}

impl From<crate::sql::Executed> for SqlAnswer {
    fn from(done: crate::sql::Executed) -> SqlAnswer {
        SqlAnswer::Executed(done)
    }
}

/// Rows for an [`on_sql`] answer: `rows(&["sku", "qty"], vec![vec!["A-1".into(), 3.into()]])`
/// (column types are left empty).
pub fn rows(columns: &[&str], rows: Vec<Vec<crate::sql::Value>>) -> SqlAnswer {
    SqlAnswer::Rows(crate::sql::Rows {
        columns: columns
            .iter()
            .map(|name| crate::sql::Column {
                name: name.to_string(),
                type_name: String::new(),
            })
            .collect(),
        rows,
    })
}

/// Answers `omnicore::sql` statements: the closure gets the connector, the statement text and
/// the parameters, and returns a [`SqlAnswer`] or an error message (start it with a status
/// name, `"UNAVAILABLE: ..."`, to set [`Error::status`]). No database runs: this is the fake
/// that returns canned rows; test against a real server through omnicore (`omnicore test`
/// docs, README "Databases from plugins").
pub fn on_sql<F>(handler: F)
where
    F: Fn(&str, &str, &[crate::sql::Value]) -> Result<SqlAnswer, String> + 'static,
{
    with(|s| s.sql = Some(Box::new(handler)));
}

/// One statement the plugin ran through the SQL fake; `BEGIN`, `COMMIT` and `ROLLBACK` are
/// recorded as statements too, with their transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlStatement {
    /// The connector named.
    pub connector: String,
    /// The statement text.
    pub sql: String,
    /// Its parameters.
    pub params: Vec<crate::sql::Value>,
    /// The transaction it ran in.
    pub tx: Option<i64>,
}

/// The statements run so far, in order.
pub fn sql_statements() -> Vec<SqlStatement> {
    with(|s| {
        s.sql_log
            .iter()
            .map(|(connector, sql, params, tx)| SqlStatement {
                connector: connector.clone(),
                sql: sql.clone(),
                params: params.clone(),
                tx: *tx,
            })
            .collect()
    })
}

/// Sets the Redis fake's key prefix (default `omnicore:plugin:`, as the host's
/// `omnicore:{plugin}:` for a plugin named `plugin`).
pub fn set_redis_prefix(prefix: &str) {
    with(|s| s.redis_prefix = Some(prefix.to_string()));
}

/// The Redis fake's keys as the server would hold them (with the prefix), sorted.
pub fn redis_keys() -> Vec<String> {
    with(|s| s.redis.keys().cloned().collect())
}

/// The seconds to live the plugin set on `key` (without the prefix); the fake's clock does
/// not move, so nothing expires by itself.
pub fn redis_ttl(key: &str) -> Option<i64> {
    with(|s| {
        let prefix = s
            .redis_prefix
            .clone()
            .unwrap_or_else(|| crate::native::redis::DEFAULT_PREFIX.to_string());
        s.redis_ttl.get(&format!("{}{}", prefix, key)).copied()
    })
}

/// Messages published through the Redis fake: `(channel with the prefix, message)`.
pub fn redis_published() -> Vec<(String, Vec<u8>)> {
    with(|s| s.redis_published.clone())
}
