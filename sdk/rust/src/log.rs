//! `omnicore:log`: write to the plugin's log (always granted).
//!
//! ```no_run
//! omnicore::log::info("starting");
//! if omnicore::log::enabled(omnicore::log::Level::Debug) {
//!     omnicore::log::debug(&format!("state: {:?}", vec![1, 2]));
//! }
//! ```

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "omnicore:log")]
extern "C" {
    #[link_name = "write"]
    fn host_write(level: i32, msg: *const u8, msg_len: usize);
    #[link_name = "enabled"]
    fn host_enabled(level: i32) -> i32;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::log::*;

pub use crate::level::Level;

/// Logs `message` at `level`.
pub fn write(level: Level, message: &str) {
    // SAFETY: the host only reads msg_len bytes at msg.
    unsafe { host_write(level as i32, message.as_ptr(), message.len()) }
}

/// Whether a message at `level` would be kept: skip costly formatting when it would not.
pub fn enabled(level: Level) -> bool {
    // SAFETY: no pointers.
    unsafe { host_enabled(level as i32) == 1 }
}

/// Logs at [`Level::Trace`].
pub fn trace(message: &str) {
    write(Level::Trace, message)
}

/// Logs at [`Level::Debug`].
pub fn debug(message: &str) {
    write(Level::Debug, message)
}

/// Logs at [`Level::Info`].
pub fn info(message: &str) {
    write(Level::Info, message)
}

/// Logs at [`Level::Warn`].
pub fn warn(message: &str) {
    write(Level::Warn, message)
}

/// Logs at [`Level::Error`].
pub fn error(message: &str) {
    write(Level::Error, message)
}
