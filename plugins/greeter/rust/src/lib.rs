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

json_handler!(greet => greet);
