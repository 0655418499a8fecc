//! The log level, shared by [`crate::log`] and [`crate::testing`] (its own module so that
//! neither imports the other).

/// A log level; the host clamps anything else to this range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace = 0,
    /// Debugging details.
    Debug = 1,
    /// Normal operation.
    Info = 2,
    /// Something looks wrong.
    Warn = 3,
    /// Something failed.
    Error = 4,
}
