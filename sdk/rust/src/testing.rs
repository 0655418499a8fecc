//! Unit-test handlers natively with `cargo test` (this module exists only on non-wasm targets).
//!
//! The SDK's host functions run in-process here: `log`, `config`, `kv`, `secrets`, `events`
//! and `tasks` behave as specs/abi.md §4 says, `http` calls the closure given to [`on_http`],
//! and `memory` and `vectors` answer `UNAVAILABLE` (test those through omnicore itself). State
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

/// Forgets all state: config, logs, kv, secrets, events, tasks and the HTTP handler.
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
