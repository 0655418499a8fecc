//! `omnicore:secrets`: read a secret the operator exposed to this plugin (grant `secrets`
//! with `expose = [...]`). Prefer HTTP connectors, which use secrets without showing them.
//!
//! ```no_run
//! let token = omnicore::secrets::get("api_token")?;  // Option<Vec<u8>>
//! # Ok::<(), omnicore::Error>(())
//! ```

use crate::error::Result;
use crate::host::read_into;

// Several namespaces import a function of the same name (`get`, `delete`); the wasm import
// module keeps them apart, which newer rustc's lint does not see.
#[cfg(target_arch = "wasm32")]
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "omnicore:secrets")]
extern "C" {
    #[link_name = "get"]
    fn host_get(name: *const u8, name_len: usize, out: *mut u8, out_cap: usize) -> i32;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::secrets::*;

/// The secret's bytes; `None` if exposed but not set. A name not exposed to this plugin is a
/// [`Status::Denied`](crate::Status::Denied) error.
pub fn get(name: &str) -> Result<Option<Vec<u8>>> {
    let what = || format!("secrets.get({:?})", name);
    // SAFETY: the host writes at most out_cap bytes at out.
    read_into(what, |out, cap| unsafe {
        host_get(name.as_ptr(), name.len(), out, cap)
    })
}
