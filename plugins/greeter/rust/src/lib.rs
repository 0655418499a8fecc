//! The greeter example: `{"name": "Ada"}` -> `{"message": "Hello, Ada!"}`.

use omnicore::{json_handler, Error};
use serde_json::{json, Value};

fn greet(input: Value) -> Result<Value, Error> {
    // Checked by hand rather than with a derived struct so each mistake gets its own message.
    let fields = input
        .as_object()
        .ok_or_else(|| Error::new("invalid JSON input: expected an object"))?;
    let name = match fields.get("name") {
        None | Some(Value::Null) => "world",
        Some(Value::String(s)) if s.is_empty() => return Err("name must not be empty".into()),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("name must be a string".into()),
    };
    let greeting = omnicore::config::get_or("greeting", "Hello");
    omnicore::log::info(&format!("greeting {}", name));
    Ok(json!({ "message": format!("{}, {}!", greeting, name) }))
}

json_handler! {
    /// Greets someone by name with the configured greeting.
    greet => greet,
}

// `omnicore test` runs these on omnicore's test host (the host's own capability code);
// omnicore::testing sets it up and reads what the handler did.
#[cfg(test)]
mod tests {
    use super::*;
    use omnicore::testing;

    #[test]
    fn greets_with_the_configured_greeting_and_logs() {
        testing::set_config(r#"{"greeting": "Hej"}"#);
        let out = testing::call_json(greet, br#"{"name": "Ada"}"#).unwrap();
        assert_eq!(out, br#"{"message":"Hej, Ada!"}"#);
        assert_eq!(
            testing::logs(),
            vec![(omnicore::log::Level::Info, "greeting Ada".into())]
        );
    }

    #[test]
    fn defaults_and_refusals() {
        assert_eq!(
            testing::call_json(greet, b"{}").unwrap(),
            br#"{"message":"Hello, world!"}"#
        );
        let error = |input: &[u8]| testing::call_json(greet, input).unwrap_err().to_string();
        assert!(error(b"{").starts_with("invalid JSON input"));
        assert_eq!(error(b"[]"), "invalid JSON input: expected an object");
        assert_eq!(error(br#"{"name": 1}"#), "name must be a string");
        assert_eq!(error(br#"{"name": ""}"#), "name must not be empty");
    }
}
