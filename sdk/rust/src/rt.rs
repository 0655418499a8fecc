//! The ABI glue the handler macros expand to. Not a public API: names here may change.

use std::alloc::{alloc, dealloc, Layout};
#[cfg(all(feature = "alloc-log", target_arch = "wasm32"))]
use std::alloc::{GlobalAlloc, System};

use crate::error::Error;

/// ABI §1.1: blocks handed to the host are aligned to at least 8.
const ALIGN: usize = 8;
/// ABI §2.2: the length field has 31 bits; the top bit of the low word is E.
const LEN_MASK: u64 = 0x7FFF_FFFF;
const ERR_BIT: u64 = 1 << 31;

#[no_mangle]
pub extern "C" fn omni_alloc(len: usize) -> *mut u8 {
    if len == 0 {
        // Any non-zero pointer will do (§1.1); omni_free ignores len 0.
        return ALIGN as *mut u8;
    }
    match Layout::from_size_align(len, ALIGN) {
        // SAFETY: the layout has a non-zero size.
        Ok(layout) => unsafe { alloc(layout) },
        Err(_) => core::ptr::null_mut(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn omni_free(ptr: *mut u8, len: usize) {
    if ptr.is_null() || len == 0 {
        return;
    }
    if let Ok(layout) = Layout::from_size_align(len, ALIGN) {
        dealloc(ptr, layout);
    }
}

/// The previous call's output (or error message). The host copies it out after the handler
/// returns, so it must live until the next call into this instance (§2.3).
static mut LAST_OUTPUT: Option<Vec<u8>> = None;
static mut HOOK_INSTALLED: bool = false;

fn begin_call() {
    // SAFETY: an instance serves one call at a time and wasm32 here is single-threaded.
    unsafe {
        LAST_OUTPUT = None;
        if !HOOK_INSTALLED {
            HOOK_INSTALLED = true;
            std::panic::set_hook(Box::new(panic_hook));
        }
    }
}

/// With `panic = "abort"` a panic traps and the host raises `Trap`; log the reason first so
/// the operator can see why in the plugin's log.
// PanicInfo is PanicHookInfo since Rust 1.81; the old name is the one 1.63 knows.
#[allow(deprecated)]
fn panic_hook(info: &std::panic::PanicInfo<'_>) {
    let payload = info.payload();
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "Box<dyn Any>"
    };
    let message = match info.location() {
        Some(loc) => format!("panic at {}:{}: {}", loc.file(), loc.line(), text),
        None => format!("panic: {}", text),
    };
    crate::log::write(crate::log::Level::Error, &message);
}

fn finish(result: Result<Vec<u8>, Error>) -> u64 {
    let (bytes, err_bit) = match result {
        Ok(out) => (out, 0),
        Err(err) => (err.message().as_bytes().to_vec(), ERR_BIT),
    };
    if bytes.len() as u64 > LEN_MASK {
        // Unreachable on wasm32 in practice; report rather than corrupt the E bit.
        return finish(Err(Error::new("handler output exceeds 2 GiB")));
    }
    let packed = ((bytes.as_ptr() as u64) << 32) | err_bit | bytes.len() as u64;
    // SAFETY: see begin_call.
    unsafe {
        LAST_OUTPUT = Some(bytes);
    }
    packed
}

/// # Safety
/// `(ptr, len)` must name readable memory for the duration of the call (the host's input
/// buffer, §2.1).
unsafe fn input<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        &[]
    } else {
        core::slice::from_raw_parts(ptr, len)
    }
}

/// The answer of an `omni_describe_NAME` export (specs/abi.md §5.1): `description`, JSON.
pub fn describe(description: Vec<u8>) -> u64 {
    begin_call();
    finish(Ok(description))
}

/// What the build is told of a bytes handler: its doc comment.
pub fn describe_doc(docs: &[&str]) -> Vec<u8> {
    let text = doc_text(docs);
    if text.is_empty() {
        return b"{}".to_vec();
    }
    let mut out = String::from("{\"description\":");
    crate::jsonlite::push_str(&mut out, &text);
    out.push('}');
    out.into_bytes()
}

/// Doc comment lines (each `/// line` arrives as `" line"`) as one paragraph.
pub fn doc_text(docs: &[&str]) -> String {
    let words: Vec<&str> = docs.iter().map(|line| line.trim()).filter(|l| !l.is_empty()).collect();
    words.join(" ")
}

#[cfg(feature = "json")]
pub use serde_json;

/// Runs a bytes handler under the ABI.
///
/// # Safety
/// Called only from an exported handler with the host's `(ptr, len)`.
pub unsafe fn call_bytes<F, O>(ptr: *const u8, len: usize, handler: F) -> u64
where
    F: FnOnce(&[u8]) -> Result<O, Error>,
    O: crate::Output,
{
    begin_call();
    finish(run_bytes(input(ptr, len), handler))
}

pub(crate) fn run_bytes<F, O>(data: &[u8], handler: F) -> Result<Vec<u8>, Error>
where
    F: FnOnce(&[u8]) -> Result<O, Error>,
    O: crate::Output,
{
    handler(data).map(crate::Output::into_bytes)
}

/// Runs a serde handler under the ABI: JSON in, JSON out.
///
/// # Safety
/// Called only from an exported handler with the host's `(ptr, len)`.
#[cfg(feature = "json")]
pub unsafe fn call_json<I, O, F>(ptr: *const u8, len: usize, handler: F) -> u64
where
    I: serde::de::DeserializeOwned,
    O: serde::Serialize,
    F: FnOnce(I) -> Result<O, Error>,
{
    begin_call();
    finish(run_json(input(ptr, len), handler))
}

#[cfg(feature = "json")]
pub(crate) fn run_json<I, O, F>(data: &[u8], handler: F) -> Result<Vec<u8>, Error>
where
    I: serde::de::DeserializeOwned,
    O: serde::Serialize,
    F: FnOnce(I) -> Result<O, Error>,
{
    match serde_json::from_slice::<I>(data) {
        Ok(value) => handler(value).and_then(|out| {
            serde_json::to_vec(&out)
                .map_err(|e| Error::new(format!("cannot encode the output as JSON: {}", e)))
        }),
        // Well-formed JSON of the wrong shape is not "invalid JSON": say which it is.
        Err(e) if e.is_data() => Err(Error::new(format!("invalid input: {}", e))),
        Err(e) => Err(Error::new(format!("invalid JSON input: {}", e))),
    }
}

/// The system allocator, plus a log line when an allocation fails: Rust then aborts (a
/// `Trap` on the host) and without this the plugin's log would not say why.
#[cfg(all(feature = "alloc-log", target_arch = "wasm32"))]
struct LoggingAlloc;

#[cfg(all(feature = "alloc-log", target_arch = "wasm32"))]
unsafe impl GlobalAlloc for LoggingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if ptr.is_null() {
            log_oom(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if ptr.is_null() {
            log_oom(layout.size());
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if new.is_null() {
            log_oom(new_size);
        }
        new
    }
}

#[cfg(all(feature = "alloc-log", target_arch = "wasm32"))]
#[global_allocator]
static GLOBAL: LoggingAlloc = LoggingAlloc;

/// Formats without allocating: the heap is what just failed.
#[cfg(all(feature = "alloc-log", target_arch = "wasm32"))]
fn log_oom(size: usize) {
    const HEAD: &[u8] = b"out of memory: an allocation of ";
    const TAIL: &[u8] = b" bytes failed";
    let mut buf = [0u8; 80];
    let mut digits = [0u8; 20];
    let (mut n, mut d) = (size, 0);
    loop {
        digits[d] = b'0' + (n % 10) as u8;
        d += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut len = 0;
    for &b in HEAD
        .iter()
        .chain(digits[..d].iter().rev())
        .chain(TAIL.iter())
    {
        buf[len] = b;
        len += 1;
    }
    // SAFETY: ASCII only.
    crate::log::write(crate::log::Level::Error, unsafe {
        core::str::from_utf8_unchecked(&buf[..len])
    });
}

/// Refuses, at compile time, export names the ABI reserves (§1.2): the host would never call
/// them as handlers.
pub const fn check_handler_name(name: &str) {
    let b = name.as_bytes();
    let omni = b.len() >= 5
        && b[0] == b'o'
        && b[1] == b'm'
        && b[2] == b'n'
        && b[3] == b'i'
        && b[4] == b'_';
    if omni || (!b.is_empty() && b[0] == b'_') {
        panic!("handler names starting with `omni_` or `_` are reserved by the omnicore ABI");
    }
}
