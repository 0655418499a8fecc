//! `omnicore:tasks`: durable background work; the host later calls one of this plugin's
//! handlers with a payload, at least once (grant `tasks`).
//!
//! ```no_run
//! let id = omnicore::tasks::enqueue("send_mail", br#"{"to":"a@b.c"}"#, 5_000)?;
//! omnicore::tasks::cancel(id)?;
//! # Ok::<(), omnicore::Error>(())
//! ```

use crate::error::{Error, Result, Status};
use crate::host::check;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "omnicore:tasks")]
extern "C" {
    #[link_name = "enqueue"]
    fn host_enqueue(
        handler: *const u8,
        handler_len: usize,
        payload: *const u8,
        payload_len: usize,
        delay_ms: i64,
    ) -> i64;
    #[link_name = "cancel"]
    fn host_cancel(id: i64) -> i32;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::tasks::*;

/// Schedules `handler(payload)` after `delay_ms`; returns the task id (≥ 1).
///
/// `handler` must be one of this plugin's handlers ([`Status::NotFound`] otherwise).
pub fn enqueue(handler: &str, payload: &[u8], delay_ms: u64) -> Result<i64> {
    let delay = i64::try_from(delay_ms).unwrap_or(i64::MAX);
    // SAFETY: the host only reads the given ranges.
    let code = unsafe {
        host_enqueue(
            handler.as_ptr(),
            handler.len(),
            payload.as_ptr(),
            payload.len(),
            delay,
        )
    };
    check(code, || format!("tasks.enqueue({:?})", handler))
}

/// Cancels task `id`: `true` if cancelled, `false` if it is already running or finished.
pub fn cancel(id: i64) -> Result<bool> {
    // SAFETY: no pointers.
    let code = unsafe { host_cancel(id) };
    if code == -1 {
        return Err(Error::from_status(
            Status::NotFound,
            &format!("no task {}", id),
        ));
    }
    check(code as i64, || "tasks.cancel".into()).map(|n| n == 1)
}
