//! Handler descriptions derived from types: what `omnicore build` reads into the manifest.
#![cfg(feature = "json")]

use omnicore::schema::{describe_json, JsonSchema};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

omnicore::json_schema! {
    /// A note to add.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AddIn {
        /// The note's "text".
        text: String,
        tag: Option<String>,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(rename = "type")]
        kind: u32,
    }
}

omnicore::json_schema! {
    #[derive(Serialize)]
    pub struct AddOut {
        pub id: i64,
        pub scores: std::collections::HashMap<String, f64>,
    }
}

fn add(input: AddIn) -> omnicore::Result<AddOut> {
    Ok(AddOut { id: input.kind as i64, scores: Default::default() })
}

fn echo(input: Value) -> omnicore::Result<Vec<String>> {
    Ok(vec![input.to_string()])
}

// Compiles with doc comments on some entries and none on others.
omnicore::json_handler! {
    /// Adds a note
    /// and returns its id.
    add => add,
    echo => echo,
}

#[test]
fn struct_schemas_follow_serde() {
    assert_eq!(
        AddIn::json_schema(),
        json!({
            "type": "object",
            "description": "A note to add.",
            "properties": {
                "text": {"type": "string", "description": "The note's \"text\"."},
                "tag": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "type": {"type": "integer"},
            },
            "required": ["text", "type"],
            "additionalProperties": false,
        })
    );
}

#[test]
fn a_handler_is_described_by_its_doc_and_types() {
    let described: Value = serde_json::from_slice(&describe_json(add, &[" Adds a note", " and returns its id."])).unwrap();
    assert_eq!(described["description"], "Adds a note and returns its id.");
    assert_eq!(described["input_schema"], AddIn::json_schema());
    assert_eq!(described["output_schema"]["required"], json!(["id", "scores"]));
    // Neither `Value` nor an array is an object schema: the manifest says nothing of them.
    let described: Value = serde_json::from_slice(&describe_json(echo, &[])).unwrap();
    assert_eq!(described, json!({}));
}
