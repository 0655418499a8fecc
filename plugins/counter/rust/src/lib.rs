//! The counter example: `count` adds `by` (default 1) to a counter that starts at config
//! `start`; `reset` puts it back. The count lives in `omnicore::kv` (key `count`, the
//! distance from `start`), so it survives a restart and every instance in the pool shares it:
//! `kv::incr` is atomic in the host.

use omnicore::{handler, json_handler, Error};
use serde::{Deserialize, Serialize};

omnicore::json_schema! {
    #[derive(Deserialize)]
    struct CountIn {
        by: Option<i64>,
    }
}

omnicore::json_schema! {
    #[derive(Serialize)]
    struct CountOut {
        count: i64,
    }
}

const KEY: &str = "count";

fn start() -> Result<i64, Error> {
    match omnicore::config::get("start")? {
        None => Ok(0),
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| Error::new(format!("config 'start' must be an integer, got {}", text))),
    }
}

fn count(input: CountIn) -> Result<CountOut, Error> {
    let by = input.by.unwrap_or(1);
    let overflow = || Error::new("counter overflow: the result does not fit in 64 bits");
    let start = start()?;
    let moved = omnicore::kv::incr(KEY, by).map_err(|_| overflow())?;
    let n = match start.checked_add(moved) {
        Some(n) => n,
        None => {
            // Take the step back so the stored count stays where it was.
            omnicore::kv::incr(KEY, by.wrapping_neg())?;
            return Err(overflow());
        }
    };
    omnicore::debug!("count += {} -> {}", by, n);
    Ok(CountOut { count: n })
}

/// Takes any input (it is ignored), so `reset` can be called with an empty body.
fn reset(_input: &[u8]) -> Result<String, Error> {
    let n = start()?;
    omnicore::kv::delete(KEY)?;
    omnicore::log::info(&format!("counter reset to {}", n));
    Ok(format!("{{\"count\":{}}}", n))
}

json_handler! {
    /// Adds `by` (default 1, may be negative) to the durable counter and returns its new value.
    count => count,
}
handler! {
    /// Puts the counter back to its configured start value and returns it.
    reset => reset,
}

// `omnicore test` runs these on omnicore's test host (the host's own capability code);
// omnicore::testing sets it up and reads what the handler did.
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
