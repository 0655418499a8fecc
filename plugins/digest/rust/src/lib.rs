//! The digest example: it reacts to events, counts them in kv, and publishes a summary on a
//! schedule; every count lives in `omnicore::kv`, so all of it survives a restart.
//!
//! - `note {"text", "delay_ms"?}` publishes `plugin.digest-rust.note` now, or later through a
//!   durable task (`omnicore::tasks`) when `delay_ms` is given.
//! - `on_event {"topic", "data"}` is the subscription handler (manifest `subscriptions`):
//!   one more for `seen` and for `topic:<topic>`.
//! - `summary` runs on the manifest's schedule: publishes `summary` with what was seen since
//!   the previous summary, and keeps it under `last`.
//! - `report` answers the counts.

use omnicore::{handler, json_handler, Error};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

omnicore::json_schema! {
    #[derive(Deserialize)]
    struct NoteIn {
        text: String,
        delay_ms: Option<u64>,
    }
}

omnicore::json_schema! {
    #[derive(Deserialize)]
    struct EventIn {
        topic: String,
    }
}

omnicore::json_schema! {
    #[derive(Serialize)]
    struct Report {
        seen: i64,
        summaries: i64,
        topics: Map<String, Value>,
        last: Value,
    }
}

fn counter(key: &str) -> Result<i64, Error> {
    match omnicore::kv::get(key)? {
        None => Ok(0),
        Some(bytes) => String::from_utf8_lossy(&bytes)
            .parse::<i64>()
            .map_err(|_| Error::new(format!("kv key {:?} does not hold a count", key))),
    }
}

fn note(input: NoteIn) -> Result<Value, Error> {
    if input.text.is_empty() {
        return Err(Error::new("text must not be empty"));
    }
    let payload = json!({ "text": input.text }).to_string();
    match input.delay_ms {
        Some(delay) if delay > 0 => {
            let id = omnicore::tasks::enqueue("note", payload.as_bytes(), delay)?;
            Ok(json!({ "queued": id }))
        }
        _ => {
            omnicore::events::publish("note", payload.as_bytes())?;
            Ok(json!({ "published": "note" }))
        }
    }
}

fn on_event(input: EventIn) -> Result<(), Error> {
    omnicore::kv::incr("seen", 1)?;
    omnicore::kv::incr(&format!("topic:{}", input.topic), 1)?;
    Ok(())
}

/// Takes any input (a schedule sends none).
fn summary(_input: &[u8]) -> Result<String, Error> {
    let seen = counter("seen")?;
    let since = seen - counter("seen_at_last")?;
    let n = omnicore::kv::incr("summaries", 1)?;
    let body = json!({ "summary": n, "seen": seen, "since_last": since }).to_string();
    omnicore::kv::set("seen_at_last", seen.to_string().as_bytes())?;
    omnicore::kv::set("last", body.as_bytes())?;
    omnicore::events::publish("summary", body.as_bytes())?;
    omnicore::info!("summary {}: {} event(s), {} since the last one", n, seen, since);
    Ok(json!({ "summary": n }).to_string())
}

/// Takes any input, so it can be called with an empty body.
fn report(_input: &[u8]) -> Result<String, Error> {
    let mut topics = Map::new();
    for key in omnicore::kv::list("topic:")? {
        topics.insert(key["topic:".len()..].to_string(), json!(counter(&key)?));
    }
    let last = match omnicore::kv::get("last")? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        None => Value::Null,
    };
    let report = Report {
        seen: counter("seen")?,
        summaries: counter("summaries")?,
        topics,
        last,
    };
    serde_json::to_string(&report).map_err(|e| Error::new(e.to_string()))
}

json_handler! {
    /// Publishes a note as the event `note` now, or after `delay_ms` through a durable task.
    note => note,
    /// Counts an event it is subscribed to (the subscription handler).
    on_event => on_event,
}
handler! {
    /// Publishes the summary of what was seen since the previous one (the scheduled handler).
    summary => summary,
    /// Answers how many events were seen, per topic, and the last summary.
    report => report,
}

// `omnicore test` runs these on omnicore's test host (the host's own capability code);
// omnicore::testing sets it up and reads what the handler did.
#[cfg(test)]
mod tests {
    use super::*;
    use omnicore::testing;

    #[test]
    fn counts_events_and_summarizes() {
        let event = br#"{"topic":"plugin.shop.order","data":{"id":1}}"#;
        testing::call_json(on_event, event).unwrap();
        testing::call_json(on_event, event).unwrap();
        let out = testing::call(summary, b"").unwrap();
        assert_eq!(out, br#"{"summary":1}"#);
        let (topic, body) = testing::events().pop().unwrap();
        assert_eq!(topic, "summary");
        assert_eq!(body, br#"{"seen":2,"since_last":2,"summary":1}"#);
        let report = testing::call(report, b"").unwrap();
        let report: Value = serde_json::from_slice(&report).unwrap();
        assert_eq!(report["topics"]["plugin.shop.order"], 2);
    }
}
