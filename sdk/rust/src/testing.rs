//! Unit-test handlers with `omnicore test` (on wasm32-wasi: `cargo test --target wasm32-wasi`
//! run on omnicore's test host).
//!
//! The host functions a handler calls are the host's own: `log`, `config`, `kv`, `secrets`,
//! `events`, `tasks`, `sql`, `redis` and `http` run the code a plugin meets live, every
//! capability granted, over in-memory stores; `http` answers what the closure given to
//! [`on_http`] returns and `sql` what [`on_sql`] returns (no network, no database: the host
//! checks the answer's shape), `redis` is an in-memory server. `memory` and `vectors` are not
//! served (test them through omnicore itself). Each test runs in a fresh instance on a fresh
//! host, so tests do not see each other, and a test that panics fails alone.
//!
//! ```no_run
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

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::error::Error;
use crate::jsonlite::{self, Value as Json};
use crate::log::Level;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "omnicore:testing")]
extern "C" {
    #[link_name = "reset"]
    fn host_reset();
    #[link_name = "set_config"]
    fn host_set_config(json: *const u8, len: usize) -> i32;
    #[link_name = "set_log_level"]
    fn host_set_log_level(level: i32);
    #[link_name = "set_secret"]
    fn host_set_secret(name: *const u8, name_len: usize, val: *const u8, val_len: usize, set: i32);
    #[link_name = "http_answer"]
    fn host_http_answer(
        head: *const u8,
        head_len: usize,
        body: *const u8,
        body_len: usize,
        err: i32,
    );
    #[link_name = "sql_answer"]
    fn host_sql_answer(answer: *const u8, len: usize, err: i32);
    #[link_name = "set_redis_prefix"]
    fn host_set_redis_prefix(prefix: *const u8, len: usize);
    #[link_name = "logs"]
    fn host_logs(out: *mut u8, cap: usize) -> i32;
    #[link_name = "kv"]
    fn host_kv(out: *mut u8, cap: usize) -> i32;
    #[link_name = "events"]
    fn host_events(out: *mut u8, cap: usize) -> i32;
    #[link_name = "tasks"]
    fn host_tasks(out: *mut u8, cap: usize) -> i32;
    #[link_name = "sql_statements"]
    fn host_sql_statements(out: *mut u8, cap: usize) -> i32;
    #[link_name = "redis_keys"]
    fn host_redis_keys(out: *mut u8, cap: usize) -> i32;
    #[link_name = "redis_published"]
    fn host_redis_published(out: *mut u8, cap: usize) -> i32;
    #[link_name = "redis_ttl"]
    fn host_redis_ttl(key: *const u8, len: usize) -> i64;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::testing::*;

type HttpFn = dyn Fn(&str, &[u8]) -> Result<(u16, Vec<(String, String)>, Vec<u8>), String>;
type SqlFn = dyn Fn(&str, &str, &[crate::sql::Value]) -> Result<SqlAnswer, String>;

thread_local! {
    static HTTP: RefCell<Option<Box<HttpFn>>> = RefCell::new(None);
    static SQL: RefCell<Option<Box<SqlFn>>> = RefCell::new(None);
}

/// What the host answered to one of the reads below, as JSON (the host writes at most `cap`
/// bytes at `out`, §3.2).
fn read(what: &str, call: impl FnMut(*mut u8, usize) -> i32) -> Json {
    let bytes = crate::host::read_into(|| what.to_string(), call)
        .unwrap_or_else(|e| panic!("testing::{}: {}", what, e))
        .unwrap_or_default();
    jsonlite::parse(&bytes).unwrap_or_else(|e| panic!("testing::{}: {}", what, e))
}

fn items(value: Json) -> Vec<Json> {
    match value {
        Json::Array(items) => items,
        _ => Vec::new(),
    }
}

fn text(value: &Json) -> String {
    match value {
        Json::Str(s) => s.clone(),
        _ => String::new(),
    }
}

fn number(value: &Json) -> i64 {
    match value {
        Json::Number(n) => n.parse().unwrap_or(0),
        _ => 0,
    }
}

fn bytes(value: &Json) -> Vec<u8> {
    crate::b64::decode(&text(value)).unwrap_or_default()
}

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

/// Forgets all state: a fresh host (config, logs, kv, secrets, events, tasks, SQL statements,
/// Redis keys) and no HTTP or SQL answers.
pub fn reset() {
    HTTP.with(|h| *h.borrow_mut() = None);
    SQL.with(|s| *s.borrow_mut() = None);
    // SAFETY: no arguments.
    unsafe { host_reset() }
}

/// Sets the plugin's config section from a JSON object. Panics on invalid JSON.
pub fn set_config(json: &str) {
    // SAFETY: the host reads the range.
    if unsafe { host_set_config(json.as_ptr(), json.len()) } != 0 {
        panic!("testing::set_config: not a JSON object: {}", json);
    }
}

/// Keeps log lines at `level` and above (default [`Level::Info`], like the host).
pub fn set_log_level(level: Level) {
    // SAFETY: an integer.
    unsafe { host_set_log_level(level as i32) }
}

/// The log lines kept so far.
pub fn logs() -> Vec<(Level, String)> {
    let level = |n: i64| match n {
        0 => Level::Trace,
        1 => Level::Debug,
        2 => Level::Info,
        3 => Level::Warn,
        _ => Level::Error,
    };
    items(read("logs", |o, c| unsafe { host_logs(o, c) }))
        .iter()
        .map(|line| match line {
            Json::Array(parts) if parts.len() == 2 => (level(number(&parts[0])), text(&parts[1])),
            _ => panic!("testing::logs: a line is [level, text]"),
        })
        .collect()
}

/// The key-value store's contents.
pub fn kv() -> BTreeMap<String, Vec<u8>> {
    match read("kv", |o, c| unsafe { host_kv(o, c) }) {
        Json::Object(items) => items.iter().map(|(k, v)| (k.clone(), bytes(v))).collect(),
        _ => BTreeMap::new(),
    }
}

/// Exposes secret `name` with `value` (`None`: exposed but not set). Unexposed names are
/// `DENIED`.
pub fn set_secret(name: &str, value: Option<&[u8]>) {
    let data = value.unwrap_or_default();
    // SAFETY: the host reads both ranges.
    unsafe {
        host_set_secret(
            name.as_ptr(),
            name.len(),
            data.as_ptr(),
            data.len(),
            value.is_some() as i32,
        )
    }
}

/// Events published so far: `(topic, payload)` (without the host's `plugin.<name>.` prefix).
pub fn events() -> Vec<(String, Vec<u8>)> {
    items(read("events", |o, c| unsafe { host_events(o, c) }))
        .iter()
        .map(|e| match e {
            Json::Array(p) if p.len() == 2 => (text(&p[0]), bytes(&p[1])),
            _ => panic!("testing::events: an event is [topic, payload]"),
        })
        .collect()
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
    items(read("tasks", |o, c| unsafe { host_tasks(o, c) }))
        .iter()
        .map(|t| match t {
            Json::Array(p) if p.len() == 5 => Task {
                id: number(&p[0]),
                handler: text(&p[1]),
                payload: bytes(&p[2]),
                delay_ms: number(&p[3]),
                cancelled: matches!(p[4], Json::Bool(true)),
            },
            _ => panic!("testing::tasks: a task is [id, handler, payload, delay, cancelled]"),
        })
        .collect()
}

/// Answers [`crate::http::Request::send`]: the closure gets the request as the JSON the host
/// receives (`{"method", "url" | "connector"+"path", "headers", ...}`) and the body, and
/// returns `(status, headers, body)` or an error message (start it with a status name, such
/// as `"DENIED: ..."`, to set [`Error::status`]). The host reads the request as it does live
/// (a malformed one is refused before the closure's answer is used) and hands the answer
/// back as it does live (header names lower-cased).
pub fn on_http<F>(handler: F)
where
    F: Fn(&str, &[u8]) -> Result<(u16, Vec<(String, String)>, Vec<u8>), String> + 'static,
{
    HTTP.with(|h| *h.borrow_mut() = Some(Box::new(handler)));
}

/// Gives the host the [`on_http`] closure's answer for the request about to be sent.
pub(crate) fn answer_http(req: &str, body: &[u8]) {
    // Taken out while it runs so the closure may itself use the testing API.
    let handler = HTTP.with(|h| h.borrow_mut().take());
    if let Some(f) = &handler {
        let (head, body, failed) = match f(req, body) {
            Err(message) => (message, Vec::new(), 1),
            Ok((status, headers, body)) => {
                let mut head = format!("{{\"status\":{},\"headers\":[", status);
                for (i, (k, v)) in headers.iter().enumerate() {
                    head.push_str(if i > 0 { ",[" } else { "[" });
                    jsonlite::push_str(&mut head, k);
                    head.push(',');
                    jsonlite::push_str(&mut head, v);
                    head.push(']');
                }
                head.push_str("]}");
                (head, body, 0)
            }
        };
        // SAFETY: the host reads both ranges.
        unsafe { host_http_answer(head.as_ptr(), head.len(), body.as_ptr(), body.len(), failed) }
    }
    HTTP.with(|h| *h.borrow_mut() = handler);
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
/// name, `"UNAVAILABLE: ..."`, to set [`Error::status`]). No database runs: the host checks
/// the answer has the shape a server's has (one value per column) and hands it back as it
/// does live; test against a real server through omnicore (README "Databases from plugins").
pub fn on_sql<F>(handler: F)
where
    F: Fn(&str, &str, &[crate::sql::Value]) -> Result<SqlAnswer, String> + 'static,
{
    SQL.with(|s| *s.borrow_mut() = Some(Box::new(handler)));
}

/// Gives the host the [`on_sql`] closure's answer for the statement about to run.
pub(crate) fn answer_sql(conn: &str, sql: &str, params: &[crate::sql::Value], query: bool) {
    let handler = SQL.with(|s| s.borrow_mut().take());
    if let Some(f) = &handler {
        let answer = match f(conn, sql, params) {
            Err(message) => Err(message),
            Ok(SqlAnswer::Rows(rows)) if query => {
                rows.to_json().map_err(|e| e.message().to_string())
            }
            Ok(SqlAnswer::Executed(done)) if !query => Ok(done.to_json()),
            Ok(SqlAnswer::Rows(_)) => Ok("{\"rows_affected\":0}".to_string()),
            Ok(SqlAnswer::Executed(_)) => Ok("{\"columns\":[],\"rows\":[]}".to_string()),
        };
        let (text, failed) = match answer {
            Ok(json) => (json, 0),
            Err(message) => (message, 1),
        };
        // SAFETY: the host reads the range.
        unsafe { host_sql_answer(text.as_ptr(), text.len(), failed) }
    }
    SQL.with(|s| *s.borrow_mut() = handler);
}

/// One statement the plugin ran; `BEGIN`, `COMMIT` and `ROLLBACK` are recorded as statements
/// too, with their transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlStatement {
    /// The connector named.
    pub connector: String,
    /// The statement text.
    pub sql: String,
    /// Its parameters.
    pub params: Vec<crate::sql::Value>,
    /// The transaction it ran in: the test's first is 1, its second 2, ...
    pub tx: Option<i64>,
}

/// The statements run so far, in order.
pub fn sql_statements() -> Vec<SqlStatement> {
    items(read("sql_statements", |o, c| unsafe {
        host_sql_statements(o, c)
    }))
    .iter()
    .map(|s| match s {
        Json::Array(p) if p.len() == 4 => SqlStatement {
            connector: text(&p[0]),
            sql: text(&p[1]),
            params: items(p[2].clone())
                .iter()
                .map(|v| crate::sql::Value::read(v).expect("a parameter the host read"))
                .collect(),
            tx: match p[3] {
                Json::Number(_) => Some(number(&p[3])),
                _ => None,
            },
        },
        _ => panic!("testing::sql_statements: [connector, sql, params, tx]"),
    })
    .collect()
}

/// Sets the Redis key prefix the helpers below show (default `omnicore:plugin:`, the host's
/// `omnicore:{plugin}:` for a plugin named `plugin`).
pub fn set_redis_prefix(prefix: &str) {
    // SAFETY: the host reads the range.
    unsafe { host_set_redis_prefix(prefix.as_ptr(), prefix.len()) }
}

/// The Redis keys as the server would hold them (with the prefix), sorted.
pub fn redis_keys() -> Vec<String> {
    items(read("redis_keys", |o, c| unsafe { host_redis_keys(o, c) }))
        .iter()
        .map(text)
        .collect()
}

/// The seconds to live the plugin set on `key` (without the prefix); `None` for a key with
/// none or no key. The test host's clock does not move, so nothing expires by itself.
pub fn redis_ttl(key: &str) -> Option<i64> {
    // SAFETY: the host reads the range.
    let ttl = unsafe { host_redis_ttl(key.as_ptr(), key.len()) };
    if ttl >= 0 {
        Some(ttl)
    } else {
        None
    }
}

/// Messages published to Redis: `(channel with the prefix, message)`.
pub fn redis_published() -> Vec<(String, Vec<u8>)> {
    items(read("redis_published", |o, c| unsafe {
        host_redis_published(o, c)
    }))
    .iter()
    .map(|m| match m {
        Json::Array(p) if p.len() == 2 => (text(&p[0]), bytes(&p[1])),
        _ => panic!("testing::redis_published: [channel, message]"),
    })
    .collect()
}
