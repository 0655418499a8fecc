//! `omnicore:kv`: a durable key-value store private to the plugin (grant `kv`).
//!
//! Keys are UTF-8, 1–512 bytes. Values are bytes.
//!
//! ```no_run
//! use omnicore::kv;
//! kv::set("greeting", b"hi")?;
//! assert_eq!(kv::get("greeting")?, Some(b"hi".to_vec()));
//! let visits = kv::incr("visits", 1)?;
//! let keys = kv::list("user:")?;
//! # Ok::<(), omnicore::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::host::{check, read_into};
use crate::jsonlite::{self, Value};

// Several namespaces import a function of the same name (`get`, `delete`); the wasm import
// module keeps them apart, which newer rustc's lint does not see.
#[cfg(target_arch = "wasm32")]
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "omnicore:kv")]
extern "C" {
    #[link_name = "get"]
    fn host_get(key: *const u8, key_len: usize, out: *mut u8, out_cap: usize) -> i32;
    #[link_name = "set"]
    fn host_set(key: *const u8, key_len: usize, val: *const u8, val_len: usize) -> i32;
    #[link_name = "delete"]
    fn host_delete(key: *const u8, key_len: usize) -> i32;
    #[link_name = "incr"]
    fn host_incr(key: *const u8, key_len: usize, delta: i64, out: *mut i64) -> i32;
    #[link_name = "list"]
    fn host_list(prefix: *const u8, prefix_len: usize, out: *mut u8, out_cap: usize) -> i32;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::kv::*;

/// The value at `key`, `None` if absent.
pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
    let what = || format!("kv.get({:?})", key);
    // SAFETY: the host writes at most out_cap bytes at out.
    read_into(what, |out, cap| unsafe {
        host_get(key.as_ptr(), key.len(), out, cap)
    })
}

/// Stores `value` at `key`. Fails with [`Status::Quota`](crate::Status::Quota) over the
/// plugin's quota and [`Status::TooLarge`](crate::Status::TooLarge) for an oversized value.
pub fn set(key: &str, value: &[u8]) -> Result<()> {
    // SAFETY: the host only reads the given ranges.
    let code = unsafe { host_set(key.as_ptr(), key.len(), value.as_ptr(), value.len()) };
    check(code as i64, || format!("kv.set({:?})", key)).map(|_| ())
}

/// Deletes `key`; `true` if it existed.
pub fn delete(key: &str) -> Result<bool> {
    // SAFETY: the host only reads the key.
    let code = unsafe { host_delete(key.as_ptr(), key.len()) };
    check(code as i64, || format!("kv.delete({:?})", key)).map(|n| n == 1)
}

/// Atomically adds `delta` to the integer at `key` (absent counts as 0); the new value.
pub fn incr(key: &str, delta: i64) -> Result<i64> {
    let mut out: i64 = 0;
    // SAFETY: the host writes 8 bytes at &out.
    let code = unsafe { host_incr(key.as_ptr(), key.len(), delta, &mut out) };
    check(code as i64, || format!("kv.incr({:?})", key)).map(|_| out)
}

/// The keys starting with `prefix`, sorted (at most 1,000).
pub fn list(prefix: &str) -> Result<Vec<String>> {
    let what = || format!("kv.list({:?})", prefix);
    // SAFETY: the host writes at most out_cap bytes at out.
    let bytes = read_into(what, |out, cap| unsafe {
        host_list(prefix.as_ptr(), prefix.len(), out, cap)
    })?
    .unwrap_or_else(|| b"[]".to_vec());
    let bad =
        |why: String| Error::new(format!("{}: host returned a bad key list: {}", what(), why));
    match jsonlite::parse(&bytes).map_err(bad)? {
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s),
                other => Err(bad(format!("{:?} is not a string", other))),
            })
            .collect(),
        _ => Err(bad("not an array".to_string())),
    }
}
