//! The two ways host functions return variable-size data (ABI §3.2 and §3.3).

use crate::error::{Error, Result, Status};

/// First guess for a §3.2 read; most config values and keys fit, so one host call suffices.
const FIRST_CAPACITY: usize = 256;
/// A value that keeps growing between the two calls is re-read a few times, not forever.
const MAX_ATTEMPTS: usize = 4;

/// Calls a §3.2 host function `call(out_ptr, out_cap) -> n` until the result fits.
///
/// `Ok(None)` when the host answered `NOT_FOUND`; other negative codes become errors that
/// name the call, as `what()` says (built only then: formatting a key costs a guest more than
/// the host call it names).
pub(crate) fn read_into<W, F>(what: W, mut call: F) -> Result<Option<Vec<u8>>>
where
    W: FnOnce() -> String,
    F: FnMut(*mut u8, usize) -> i32,
{
    let mut buf: Vec<u8> = Vec::with_capacity(FIRST_CAPACITY);
    for _ in 0..MAX_ATTEMPTS {
        let cap = buf.capacity();
        let n = call(buf.as_mut_ptr(), cap);
        if n < 0 {
            return match Status::from_code(n as i64) {
                Status::NotFound => Ok(None),
                status => Err(Error::from_status(status, &what())),
            };
        }
        let n = n as usize;
        if n <= cap {
            // SAFETY: the host wrote exactly n bytes at buf (§3.2).
            unsafe { buf.set_len(n) };
            return Ok(Some(buf));
        }
        buf = Vec::with_capacity(n);
    }
    Err(Error::new(format!(
        "{}: the value kept changing size while being read",
        what()
    )))
}

/// Takes ownership of a §3.3 block the host allocated with `omni_alloc`.
///
/// `Ok(bytes)` for `E = 0`; for `E = 1` an error whose status comes from the message prefix.
pub(crate) fn take_block(packed: u64) -> Result<Vec<u8>> {
    let is_err = packed & (1 << 31) != 0;
    let bytes = block_bytes(packed);
    if is_err {
        Err(Error::from_host_message(
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    } else {
        Ok(bytes)
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn block_bytes(packed: u64) -> Vec<u8> {
    let ptr = (packed >> 32) as usize as *mut u8;
    let len = (packed & 0x7FFF_FFFF) as usize;
    if len == 0 {
        return Vec::new();
    }
    // SAFETY: the host wrote len bytes into a block it got from omni_alloc(len).
    let copy = unsafe { core::slice::from_raw_parts(ptr, len) }.to_vec();
    unsafe { crate::__rt::omni_free(ptr, len) };
    copy
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn block_bytes(packed: u64) -> Vec<u8> {
    crate::native::take_block(packed)
}

/// Maps a status-or-value return (`i32`/`i64`) to a `Result`; `what()` names the call in an
/// error (built only then).
pub(crate) fn check<W: FnOnce() -> String>(code: i64, what: W) -> Result<i64> {
    if code < 0 {
        Err(Error::from_status(Status::from_code(code), &what()))
    } else {
        Ok(code)
    }
}
