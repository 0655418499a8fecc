//! `omnicore:events`: publish events (grant `events`). The host prefixes topics with
//! `plugin.<name>.` so a plugin cannot forge host events. Subscriptions are declared in the
//! manifest (`omnicore.toml`).
//!
//! ```no_run
//! omnicore::events::publish("order.created", br#"{"id": 7}"#)?;
//! # Ok::<(), omnicore::Error>(())
//! ```

use crate::error::Result;
use crate::host::check;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "omnicore:events")]
extern "C" {
    #[link_name = "publish"]
    fn host_publish(
        topic: *const u8,
        topic_len: usize,
        payload: *const u8,
        payload_len: usize,
    ) -> i32;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::events::*;

/// Publishes `payload` on `topic`.
pub fn publish(topic: &str, payload: &[u8]) -> Result<()> {
    // SAFETY: the host only reads the given ranges.
    let code =
        unsafe { host_publish(topic.as_ptr(), topic.len(), payload.as_ptr(), payload.len()) };
    check(code as i64, || format!("events.publish({:?})", topic)).map(|_| ())
}
