//! JSON Schemas of handler types (feature `json`), so AI agents see what a handler takes and
//! gives.
//!
//! A handler exported with a doc comment in [`json_handler!`](crate::json_handler) is
//! described to the build: the comment is its description, and the schemas of its input and
//! output types (when they are JSON objects) its `input_schema` and `output_schema`
//! (specs/abi.md §5). Those types implement [`JsonSchema`]: the SDK does it for the standard
//! types, and [`json_schema!`](crate::json_schema) for your structs:
//!
//! ```ignore
//! omnicore::json_schema! {
//!     #[derive(serde::Deserialize)]
//!     struct AddIn {
//!         /// The note's text.
//!         text: String,
//!         tag: Option<String>,
//!     }
//! }
//!
//! omnicore::json_handler! {
//!     /// Remembers a note and returns its id.
//!     add => add,
//! }
//! ```
//!
//! A field is optional when its type is an `Option` or it has `#[serde(default)]`; a
//! `#[serde(rename = "...")]` names its property.

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// A type whose JSON form has a JSON Schema.
pub trait JsonSchema {
    /// The schema of this type's JSON.
    fn json_schema() -> Value;
    /// Whether a struct field of this type may be left out (`Option`).
    fn optional() -> bool {
        false
    }
}

macro_rules! simple {
    ($kind:literal: $($t:ty),+) => {
        $(impl JsonSchema for $t {
            fn json_schema() -> Value {
                json!({"type": $kind})
            }
        })+
    };
}

simple!("string": String, char);
simple!("boolean": bool);
simple!("integer": i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);
simple!("number": f32, f64);

/// Any JSON.
impl JsonSchema for Value {
    fn json_schema() -> Value {
        json!({})
    }
}

/// JSON `null`.
impl JsonSchema for () {
    fn json_schema() -> Value {
        json!({"type": "null"})
    }
}

impl<T: JsonSchema> JsonSchema for Option<T> {
    fn json_schema() -> Value {
        json!({"anyOf": [T::json_schema(), {"type": "null"}]})
    }
    fn optional() -> bool {
        true
    }
}

impl<T: JsonSchema> JsonSchema for Box<T> {
    fn json_schema() -> Value {
        T::json_schema()
    }
}

impl<T: JsonSchema> JsonSchema for Vec<T> {
    fn json_schema() -> Value {
        json!({"type": "array", "items": T::json_schema()})
    }
}

impl<T: JsonSchema> JsonSchema for HashMap<String, T> {
    fn json_schema() -> Value {
        json!({"type": "object", "additionalProperties": T::json_schema()})
    }
}

impl<T: JsonSchema> JsonSchema for BTreeMap<String, T> {
    fn json_schema() -> Value {
        json!({"type": "object", "additionalProperties": T::json_schema()})
    }
}

impl JsonSchema for Map<String, Value> {
    fn json_schema() -> Value {
        json!({"type": "object"})
    }
}

/// Implements [`JsonSchema`] for the struct it wraps (which it defines unchanged): one
/// property per field, named as serde names it.
#[macro_export]
macro_rules! json_schema {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }

        impl $crate::schema::JsonSchema for $name {
            fn json_schema() -> $crate::__rt::serde_json::Value {
                let mut schema = $crate::schema::__Object::new(&[$(stringify!($meta)),*]);
                $(
                    schema.field(
                        stringify!($field),
                        &[$(stringify!($fmeta)),*],
                        <$ty as $crate::schema::JsonSchema>::json_schema(),
                        <$ty as $crate::schema::JsonSchema>::optional(),
                    );
                )*
                schema.finish()
            }
        }
    };
}

/// The object schema [`json_schema!`](crate::json_schema) builds, from the text of the
/// struct's and fields' attributes.
#[doc(hidden)]
pub struct __Object {
    properties: Map<String, Value>,
    required: Vec<Value>,
    closed: bool,
    description: Option<String>,
}

impl __Object {
    pub fn new(attrs: &[&str]) -> Self {
        __Object {
            properties: Map::new(),
            required: Vec::new(),
            closed: attrs.iter().any(|a| serde_args(a).iter().any(|s| s == "deny_unknown_fields")),
            description: doc_of(attrs),
        }
    }

    pub fn field(&mut self, name: &str, attrs: &[&str], mut schema: Value, optional: bool) {
        let mut key = name.trim_start_matches("r#").to_string();
        let mut defaulted = false;
        for arg in attrs.iter().flat_map(|a| serde_args(a)) {
            if arg == "default" || arg.starts_with("default =") || arg.starts_with("default=") {
                defaulted = true;
            } else if let Some(renamed) = arg.strip_prefix("rename") {
                let value = renamed.trim_start().trim_start_matches('=').trim();
                if let Some(text) = unquote(value) {
                    key = text;
                }
            }
        }
        if let (Some(doc), Some(map)) = (doc_of(attrs), schema.as_object_mut()) {
            map.insert("description".into(), Value::String(doc));
        }
        if !optional && !defaulted {
            self.required.push(Value::String(key.clone()));
        }
        self.properties.insert(key, schema);
    }

    pub fn finish(self) -> Value {
        let mut out = Map::new();
        out.insert("type".into(), "object".into());
        if let Some(doc) = self.description {
            out.insert("description".into(), Value::String(doc));
        }
        out.insert("properties".into(), Value::Object(self.properties));
        if !self.required.is_empty() {
            out.insert("required".into(), Value::Array(self.required));
        }
        if self.closed {
            out.insert("additionalProperties".into(), Value::Bool(false));
        }
        Value::Object(out)
    }
}

/// The comma-separated arguments of a `serde(...)` attribute's text; none for another one.
fn serde_args(attr: &str) -> Vec<String> {
    let attr = attr.trim();
    match attr.strip_prefix("serde").map(str::trim_start) {
        Some(rest) if rest.starts_with('(') && rest.ends_with(')') => rest[1..rest.len() - 1]
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// The doc comment among attribute texts (`doc = " line"`), lines joined, or None.
#[doc(hidden)]
pub fn doc_of(attrs: &[&str]) -> Option<String> {
    let lines: Vec<String> = attrs
        .iter()
        .filter_map(|a| a.trim().strip_prefix("doc").map(str::trim_start))
        .filter_map(|a| a.strip_prefix('=').map(str::trim))
        .filter_map(unquote)
        .map(|line| line.trim().to_string())
        .collect();
    let text = lines.join(" ").trim().to_string();
    if text.is_empty() {
        None
    } else {
        Some(text)
    }
}

/// The text of a string literal as `stringify!` writes it: `"..."` with escapes, or a raw
/// `r#"..."#` (how doc comments come).
fn unquote(literal: &str) -> Option<String> {
    if let Some(raw) = literal.strip_prefix('r') {
        let hashes = raw.len() - raw.trim_start_matches('#').len();
        let body = &raw[hashes..raw.len().checked_sub(hashes)?];
        return Some(body.strip_prefix('"')?.strip_suffix('"')?.to_string());
    }
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// What the build is told of a JSON handler (`omni_describe_NAME`, specs/abi.md §5.1).
#[doc(hidden)]
pub fn describe_json<I: JsonSchema, O: JsonSchema, F: FnOnce(I) -> crate::Result<O>>(
    _handler: F,
    docs: &[&str],
) -> Vec<u8> {
    let mut out = Map::new();
    let doc = crate::__rt::doc_text(docs);
    if !doc.is_empty() {
        out.insert("description".into(), Value::String(doc));
    }
    for (key, schema) in [("input_schema", I::json_schema()), ("output_schema", O::json_schema())] {
        if schema.get("type") == Some(&Value::String("object".into())) {
            out.insert(key.into(), schema);
        }
    }
    serde_json::to_vec(&Value::Object(out)).unwrap_or_default()
}
