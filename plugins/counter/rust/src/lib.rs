//! The counter example: `count` adds `by` (default 1) to a per-instance counter that starts
//! at config `start`; `reset` puts it back. State lives in the instance, so it is lost when
//! the host replaces the instance (durable counters belong in `omnicore::kv`).

use std::cell::Cell;

use omnicore::{handler, json_handler, Error};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountIn {
    by: Option<i64>,
}

#[derive(Serialize)]
struct CountOut {
    count: i64,
}

thread_local! {
    // Per instance: a wasm instance is single-threaded, so this is one plain global there.
    static COUNTER: Cell<Option<i64>> = const { Cell::new(None) };
}

fn start() -> Result<i64, Error> {
    match omnicore::config::get("start")? {
        None => Ok(0),
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| Error::new(format!("config 'start' must be an integer, got {}", text))),
    }
}

fn current() -> Result<i64, Error> {
    match COUNTER.with(Cell::get) {
        Some(n) => Ok(n),
        None => start(),
    }
}

fn count(input: CountIn) -> Result<CountOut, Error> {
    let by = input.by.unwrap_or(1);
    let n = current()?
        .checked_add(by)
        .ok_or_else(|| Error::new("counter overflow: the result does not fit in 64 bits"))?;
    COUNTER.with(|c| c.set(Some(n)));
    omnicore::debug!("count += {} -> {}", by, n);
    Ok(CountOut { count: n })
}

/// Takes any input (it is ignored), so `reset` can be called with an empty body.
fn reset(_input: &[u8]) -> Result<String, Error> {
    let n = start()?;
    COUNTER.with(|c| c.set(Some(n)));
    omnicore::log::info(&format!("counter reset to {}", n));
    Ok(format!("{{\"count\":{}}}", n))
}

json_handler!(count => count);
handler!(reset => reset);

// `cargo test` runs these natively: omnicore::testing stands in for the host.
#[cfg(test)]
mod tests {
    use super::*;
    use omnicore::testing;

    #[test]
    fn counts_from_start_and_resets() {
        testing::set_config(r#"{"start": 10}"#);
        let count = |input: &[u8]| testing::call_json(count, input).unwrap();
        assert_eq!(count(b"{}"), br#"{"count":11}"#);
        assert_eq!(count(br#"{"by": -20}"#), br#"{"count":-9}"#);
        assert_eq!(testing::call(reset, b"").unwrap(), br#"{"count":10}"#);
        let overflow = testing::call_json(super::count, br#"{"by": 9223372036854775807}"#);
        assert!(overflow
            .unwrap_err()
            .to_string()
            .starts_with("counter overflow"));
    }
}
