//! Write omnicore plugins in Rust.
//!
//! A plugin is a `cdylib` for `wasm32-unknown-unknown`. Its handlers are ordinary functions;
//! a macro exports each one under the omnicore ABI v1 (`specs/abi.md`): the macro handles the
//! input buffer, the packed `(ptr, len)` result with its error bit, and the lifetime of the
//! output, so a handler never touches raw pointers.
//!
//! ```no_run
//! use omnicore::{handler, Error};
//!
//! fn echo(input: &[u8]) -> Result<Vec<u8>, Error> {
//!     if input.is_empty() {
//!         return Err(Error::new("nothing to echo"));  // the host raises GuestError
//!     }
//!     omnicore::log::info("echoing");
//!     Ok(input.to_vec())
//! }
//!
//! handler!(echo => echo);
//! ```
//!
//! With the `json` feature, handlers take and return serde types; malformed input is refused
//! with `invalid JSON input: ...` (or `invalid input: ...` for well-formed JSON of the wrong
//! shape) before the handler runs:
//!
//! ```ignore
//! #[derive(serde::Deserialize)] struct In { by: Option<i64> }
//! #[derive(serde::Serialize)] struct Out { count: i64 }
//! fn count(input: In) -> omnicore::Result<Out> { Ok(Out { count: input.by.unwrap_or(1) }) }
//! omnicore::json_handler!(count => count);
//! ```
//!
//! Host capabilities live in one module per ABI namespace: [`log`](mod@log), [`config`], [`kv`],
//! [`memory`], [`vectors`], [`tasks`], [`http`], [`events`], [`secrets`],
//! [`sql`] and [`redis`] (database connectors), [`mcp`] (the MCP client of a tool call).
//! A plugin imports a
//! namespace only if it calls into it, and the operator must grant every namespace but `log`.
//!
//! A panic traps the call (the host raises `Trap`); the SDK logs the panic message at error
//! level first, so the plugin's log says why.
//!
//! Handlers are unit-tested with `omnicore test`: `cargo test` for wasm32-wasi, each test run
//! on omnicore's test host (the host's own capability code over in-memory stores): see
//! [`testing`].

#![warn(missing_docs)]

mod b64;
mod error;
mod host;
mod jsonlite;
mod level;

pub mod config;
pub mod events;
pub mod http;
pub mod kv;
pub mod log;
pub mod mcp;
pub mod memory;
pub mod redis;
pub mod route;
#[cfg(feature = "json")]
pub mod schema;
pub mod secrets;
pub mod sql;
pub mod tasks;
pub mod vectors;

#[doc(hidden)]
#[path = "rt.rs"]
pub mod __rt;

#[cfg(all(test, target_arch = "wasm32"))]
mod contract_test;
#[cfg(not(target_arch = "wasm32"))]
mod native;
// Tests run on wasm32-wasi (`omnicore test`); plugins are built for wasm32-unknown-unknown,
// which has no use for it. Natively it compiles and says how tests run (`native`).
#[cfg(any(target_os = "wasi", not(target_arch = "wasm32")))]
pub mod testing;

pub use error::{Error, Result, Status};

/// What a bytes handler may return: the output bytes, taken without copying where possible.
pub trait Output {
    /// The bytes the host receives.
    fn into_bytes(self) -> Vec<u8>;
}

impl Output for Vec<u8> {
    fn into_bytes(self) -> Vec<u8> {
        self
    }
}

impl Output for String {
    fn into_bytes(self) -> Vec<u8> {
        String::into_bytes(self)
    }
}

impl Output for &'static str {
    fn into_bytes(self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl Output for &'static [u8] {
    fn into_bytes(self) -> Vec<u8> {
        self.to_vec()
    }
}

impl Output for Box<[u8]> {
    fn into_bytes(self) -> Vec<u8> {
        self.into_vec()
    }
}

/// Empty output.
impl Output for () {
    fn into_bytes(self) -> Vec<u8> {
        Vec::new()
    }
}

/// Exports bytes handlers: `handler!(export_name => function, ...)`.
///
/// Each `function` is a `fn(&[u8]) -> Result<O, Error>` (any path) where `O` is an [`Output`]:
/// `Vec<u8>`, `String`, `&'static str`, `&'static [u8]`, `Box<[u8]>` or `()`. The wasm export
/// is named `export_name`; it may equal the function's name. A doc comment before an entry
/// is the handler's description for AI agents (the build writes it into the manifest).
#[macro_export]
macro_rules! handler {
    ($($(#[doc = $doc:expr])* $name:ident => $func:path),+ $(,)?) => {
        $(
            $crate::__describe!([$($doc),*] $name $crate::__rt::describe_doc(&[$($doc),*]));
            const _: () = {
                $crate::__rt::check_handler_name(stringify!($name));
                #[cfg_attr(target_arch = "wasm32", export_name = stringify!($name))]
                // Natively (cargo test) a handler named like a libc function (`free`, `write`)
                // would replace it in the test binary: export it under a prefixed name.
                #[cfg_attr(
                    not(target_arch = "wasm32"),
                    export_name = concat!("__omnicore_handler_", stringify!($name))
                )]
                unsafe extern "C" fn __omnicore_handler(ptr: *const u8, len: usize) -> u64 {
                    $crate::__rt::call_bytes(ptr, len, $func)
                }
            };
        )+
    };
}

/// Exports JSON handlers (feature `json`): `json_handler!(export_name => function, ...)`.
///
/// Each `function` is a `fn(In) -> Result<Out, Error>` where `In: DeserializeOwned` and
/// `Out: Serialize`. Input that does not decode as `In` fails the call with
/// `invalid JSON input: ...` (malformed) or `invalid input: ...` (wrong shape, from serde);
/// use `serde_json::Value` as `In` to check shapes yourself.
///
/// A doc comment before an entry describes the handler to AI agents: the build writes it,
/// and the JSON Schemas of `In` and `Out` (which then implement [`schema::JsonSchema`]; see
/// [`json_schema!`]), into the manifest.
///
/// ```ignore
/// omnicore::json_handler! {
///     /// Remembers a note and returns its id.
///     add => add,
/// }
/// ```
#[macro_export]
macro_rules! json_handler {
    ($($(#[doc = $doc:expr])* $name:ident => $func:path),+ $(,)?) => {
        $(
            $crate::__describe!([$($doc),*] $name
                                $crate::schema::describe_json($func, &[$($doc),*]));
            const _: () = {
                $crate::__rt::check_handler_name(stringify!($name));
                #[cfg_attr(target_arch = "wasm32", export_name = stringify!($name))]
                // Natively (cargo test) a handler named like a libc function (`free`, `write`)
                // would replace it in the test binary: export it under a prefixed name.
                #[cfg_attr(
                    not(target_arch = "wasm32"),
                    export_name = concat!("__omnicore_handler_", stringify!($name))
                )]
                unsafe extern "C" fn __omnicore_handler(ptr: *const u8, len: usize) -> u64 {
                    $crate::__rt::call_json(ptr, len, $func)
                }
            };
        )+
    };
}

/// The `omni_describe_NAME` export of a handler with a doc comment (specs/abi.md §5.1).
#[doc(hidden)]
#[macro_export]
macro_rules! __describe {
    ([] $name:ident $description:expr) => {};
    ([$($doc:expr),+] $name:ident $description:expr) => {
        const _: () = {
            // Natively it is only type-checked: the build reads it from the wasm.
            #[cfg_attr(target_arch = "wasm32",
                               export_name = concat!("omni_describe_", stringify!($name)))]
            #[allow(dead_code)]
            extern "C" fn __omnicore_describe(_ptr: *const u8, _len: usize) -> u64 {
                $crate::__rt::describe($description)
            }
        };
    };
}

/// Logs a `format!`-style message at a level, formatting only when the host keeps that level:
/// `omnicore::log!(Level::Debug, "state: {:?}", state)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {{
        let level: $crate::log::Level = $level;
        if $crate::log::enabled(level) {
            $crate::log::write(level, &::std::format!($($arg)+));
        }
    }};
}

/// `omnicore::info!("greeting {}", name)`: [`log!`] at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Info, $($arg)+) };
}

/// [`log!`] at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Debug, $($arg)+) };
}

/// [`log!`] at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Warn, $($arg)+) };
}

/// [`log!`] at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Error, $($arg)+) };
}
