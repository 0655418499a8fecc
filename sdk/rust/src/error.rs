//! The one error type of the SDK: what a handler returns and what host functions fail with.

use core::fmt;

/// A failure status of a host function (omnicore ABI v1, §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `-1`: the key, secret, task or id does not exist.
    NotFound,
    /// `-2`: the operator's grant does not allow this.
    Denied,
    /// `-3`: a malformed argument (bad UTF-8, bad JSON, bad key).
    Invalid,
    /// `-4`: a quota or limit of the grant was hit.
    Quota,
    /// `-5`: the backing service failed (I/O, upstream HTTP, storage).
    Unavailable,
    /// `-6`: the value exceeds a size limit.
    TooLarge,
    /// A status this SDK version does not know (a newer host).
    Other(i32),
}

impl Status {
    /// The status for a negative host return code.
    pub fn from_code(code: i64) -> Status {
        match code {
            -1 => Status::NotFound,
            -2 => Status::Denied,
            -3 => Status::Invalid,
            -4 => Status::Quota,
            -5 => Status::Unavailable,
            -6 => Status::TooLarge,
            other => Status::Other(other as i32),
        }
    }

    /// The ABI name, as it prefixes §3.3 error messages (`"DENIED"`).
    pub fn name(self) -> &'static str {
        match self {
            Status::NotFound => "NOT_FOUND",
            Status::Denied => "DENIED",
            Status::Invalid => "INVALID",
            Status::Quota => "QUOTA",
            Status::Unavailable => "UNAVAILABLE",
            Status::TooLarge => "TOO_LARGE",
            Status::Other(_) => "ERROR",
        }
    }

    /// Reads the status from the `"NAME: ..."` prefix of a §3.3 error message.
    pub(crate) fn from_message(message: &str) -> Option<Status> {
        let name = message.split(':').next()?.trim();
        [
            Status::NotFound,
            Status::Denied,
            Status::Invalid,
            Status::Quota,
            Status::Unavailable,
            Status::TooLarge,
        ]
        .iter()
        .copied()
        .find(|s| s.name() == name)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Other(code) => write!(f, "status {}", code),
            s => f.write_str(s.name()),
        }
    }
}

/// An error with a message for humans and, when a host function failed, its [`Status`].
///
/// A handler returning `Err(e)` makes the host raise `GuestError` carrying `e`'s message.
/// Build one with [`Error::new`], or with `?` / `.into()` from a `String` or `&str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: Option<Status>,
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            status: None,
            message: message.into(),
        }
    }

    /// The error of a host function that returned `status`; `what` says which call failed.
    pub fn from_status(status: Status, what: &str) -> Error {
        Error {
            status: Some(status),
            message: format!("{}: {}", status, what),
        }
    }

    /// The host status behind this error, if it came from a host function.
    pub fn status(&self) -> Option<Status> {
        self.status
    }

    /// The message (what the host shows as the guest's error).
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn from_host_message(message: String) -> Error {
        Error {
            status: Status::from_message(&message),
            message,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::new(message)
    }
}

impl From<core::str::Utf8Error> for Error {
    fn from(err: core::str::Utf8Error) -> Error {
        Error::new(format!("invalid UTF-8: {}", err))
    }
}

impl From<std::string::FromUtf8Error> for Error {
    fn from(err: std::string::FromUtf8Error) -> Error {
        Error::new(format!("invalid UTF-8: {}", err))
    }
}

#[cfg(feature = "json")]
impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Error {
        Error::new(format!("JSON error: {}", err))
    }
}

/// `Result` with the SDK's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
