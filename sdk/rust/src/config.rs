//! `omnicore:config`: the plugin's own config section, set by the operator (grant `config`).
//!
//! ```no_run
//! let greeting = omnicore::config::get_or("greeting", "Hello");
//! let port: Option<String> = omnicore::config::get("db.port")?;  // "5432" (JSON text)
//! # Ok::<(), omnicore::Error>(())
//! ```

use crate::error::Result;
use crate::host::read_into;

// Several namespaces import a function of the same name (`get`, `delete`); the wasm import
// module keeps them apart, which newer rustc's lint does not see.
#[cfg(target_arch = "wasm32")]
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "omnicore:config")]
extern "C" {
    #[link_name = "get"]
    fn host_get(key: *const u8, key_len: usize, out: *mut u8, out_cap: usize) -> i32;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::config::*;

/// The value at `key` as text, `None` if absent.
///
/// A string value comes back verbatim, any other value as compact JSON (`42`, `true`,
/// `{"a":1}`). Dotted keys (`db.host`) walk nested objects.
pub fn get(key: &str) -> Result<Option<String>> {
    let what = || format!("config.get({:?})", key);
    // SAFETY: the host writes at most out_cap bytes at out.
    let bytes = read_into(what, |out, cap| unsafe {
        host_get(key.as_ptr(), key.len(), out, cap)
    })?;
    match bytes {
        None => Ok(None),
        Some(b) => Ok(Some(String::from_utf8(b)?)),
    }
}

/// The value at `key`, or `default` when it is absent or cannot be read.
pub fn get_or(key: &str, default: &str) -> String {
    match get(key) {
        Ok(Some(value)) => value,
        _ => default.to_string(),
    }
}

/// The whole config section as a JSON object.
pub fn all() -> Result<String> {
    Ok(get("")?.unwrap_or_else(|| "{}".to_string()))
}

/// The value at `key` decoded from JSON into `T` (a string value is decoded as a JSON string).
#[cfg(feature = "json")]
pub fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>> {
    let text = match get(key)? {
        None => return Ok(None),
        Some(t) => t,
    };
    match serde_json::from_str::<T>(&text) {
        Ok(v) => Ok(Some(v)),
        // A string value arrives verbatim, without quotes: retry it as a JSON string.
        Err(first) => serde_json::from_value(serde_json::Value::String(text))
            .map(Some)
            .map_err(|_| crate::Error::new(format!("config key {:?}: {}", key, first))),
    }
}
