//! A `wasi:http/proxy` component written in Rust, nothing of omnicore in it, with its
//! canonical-ABI bindings written by hand: what `wit-bindgen` would generate for the few
//! functions used, since neither `wit-bindgen` nor the `wasi` crate is packaged here.
//!
//! * `.../hello`: 200 `hello from rust`.
//! * `.../info`: 200, JSON of the method, the path with its query, the values of every
//!   `x-test`, `authorization` and `cookie` field (lists: a name sent twice is two fields,
//!   each value its own bytes; the last two show what the route's rules let through), the
//!   body's length and FNV-1a hash, and how many requests this instance has served.
//! * `.../echo`: 200, the request body back, `x-body-fnv1a` naming its hash.
//! * `.../panic`: sets a 200 response, writes half a body, then panics (a trap).
//! * anything else: 404, JSON naming the path.
//!
//! How the flat signatures below come about (the canonical ABI's "flattening"): a resource
//! handle, `bool`, `u8`/`u16`/`u32` and an enum are one `i32`; a `string` or `list<T>` is two
//! (pointer, length into this module's memory); `u64` is one `i64`; a variant (`option`,
//! `result`, `variant`) is an `i32` discriminant followed by its cases' flat values joined
//! slot by slot (`i32` and `i64` in one slot join to `i64`). Parameters stay flat up to 16
//! values; a result of more than one flat value is instead written by the host into a
//! "return area" whose address is passed as one more (last) `i32` parameter, laid out as in
//! memory: a variant's discriminant at offset 0 (one byte when it has < 256 cases) and its
//! payload at the next multiple of the payload's alignment. Lists and strings the host returns
//! are allocated in this module through its exported `cabi_realloc` and are ours to free.

use std::alloc::{self, Layout};
use std::sync::atomic::{AtomicU32, Ordering};

// ---- the imports ---------------------------------------------------------------------

#[link(wasm_import_module = "wasi:io/error@0.2.12")]
extern "C" {
    #[link_name = "[resource-drop]error"]
    fn drop_error(handle: i32);
}

#[link(wasm_import_module = "wasi:io/streams@0.2.12")]
extern "C" {
    /// `blocking-read(len: u64) -> result<list<u8>, stream-error>`: self, len (u64: i64),
    /// return area: [0] result tag; ok: [4] pointer, [8] length; err: [4] stream-error tag
    /// (0 last-operation-failed, 1 closed), [8] its `error` handle.
    #[link_name = "[method]input-stream.blocking-read"]
    fn input_blocking_read(stream: i32, len: i64, ret: *mut u8);
    /// `blocking-write-and-flush(contents: list<u8>) -> result<_, stream-error>`: the list
    /// is two values; the result (tag + the stream-error's two) goes to a return area.
    #[link_name = "[method]output-stream.blocking-write-and-flush"]
    fn output_blocking_write_and_flush(stream: i32, ptr: *const u8, len: usize, ret: *mut u8);
    #[link_name = "[resource-drop]input-stream"]
    fn drop_input_stream(handle: i32);
    #[link_name = "[resource-drop]output-stream"]
    fn drop_output_stream(handle: i32);
}

#[link(wasm_import_module = "wasi:http/types@0.2.12")]
extern "C" {
    /// `method() -> method`: a variant whose `other` case holds a string: tag + 2 = 3 flat
    /// values, so a return area: [0] tag, [4] pointer, [8] length.
    #[link_name = "[method]incoming-request.method"]
    fn request_method(request: i32, ret: *mut u8);
    /// `path-with-query() -> option<string>`: [0] tag, [4] pointer, [8] length.
    #[link_name = "[method]incoming-request.path-with-query"]
    fn request_path_with_query(request: i32, ret: *mut u8);
    /// `headers() -> headers`: an own handle, one i32, returned directly.
    #[link_name = "[method]incoming-request.headers"]
    fn request_headers(request: i32) -> i32;
    /// `consume() -> result<incoming-body>`: tag + handle = 2 flat values: [0] tag, [4] handle.
    #[link_name = "[method]incoming-request.consume"]
    fn request_consume(request: i32, ret: *mut u8);
    #[link_name = "[resource-drop]incoming-request"]
    fn drop_incoming_request(handle: i32);

    /// `stream() -> result<input-stream>`: [0] tag, [4] handle.
    #[link_name = "[method]incoming-body.stream"]
    fn incoming_body_stream(body: i32, ret: *mut u8);
    #[link_name = "[resource-drop]incoming-body"]
    fn drop_incoming_body(handle: i32);

    #[link_name = "[constructor]fields"]
    fn fields_new() -> i32;
    /// `get(name: string) -> list<list<u8>>`: [0] pointer to (pointer, length) pairs, [4]
    /// their count.
    #[link_name = "[method]fields.get"]
    fn fields_get(fields: i32, name: *const u8, name_len: usize, ret: *mut u8);
    /// `append(name: string, value: list<u8>) -> result<_, header-error>`: the result is
    /// tag + header-error's tag = 2 flat values: [0] tag, [1] header-error (an enum-like
    /// variant of one byte).
    #[link_name = "[method]fields.append"]
    fn fields_append(fields: i32, name: *const u8, name_len: usize, value: *const u8,
                     value_len: usize, ret: *mut u8);
    #[link_name = "[resource-drop]fields"]
    fn drop_fields(handle: i32);

    /// `constructor(headers: headers)`: takes the headers (own), gives the response.
    #[link_name = "[constructor]outgoing-response"]
    fn outgoing_response_new(headers: i32) -> i32;
    /// `set-status-code(u16) -> result`: `result<_, _>` is one flat value, returned directly.
    #[link_name = "[method]outgoing-response.set-status-code"]
    fn outgoing_response_set_status_code(response: i32, status: i32) -> i32;
    /// `body() -> result<outgoing-body>`: [0] tag, [4] handle.
    #[link_name = "[method]outgoing-response.body"]
    fn outgoing_response_body(response: i32, ret: *mut u8);
    /// `write() -> result<output-stream>`: [0] tag, [4] handle.
    #[link_name = "[method]outgoing-body.write"]
    fn outgoing_body_write(body: i32, ret: *mut u8);
    /// `finish(this: outgoing-body, trailers: option<trailers>) -> result<_, error-code>`:
    /// the option is tag + handle; the result holds `error-code` (8-aligned: some cases hold
    /// a u64), so a return area with the tag at [0].
    #[link_name = "[static]outgoing-body.finish"]
    fn outgoing_body_finish(body: i32, has_trailers: i32, trailers: i32, ret: *mut u8);
    /// `set(param: response-outparam, response: result<outgoing-response, error-code>)`.
    /// Nine flat parameters: the outparam, the result's tag, then the join of `ok`'s handle
    /// with `error-code` flattened (its tag, then the join of all its cases' payloads: the
    /// widest, `option<field-size-payload>`, is six values; `option<u64>`'s u64 falls in the
    /// second slot, which makes that slot an i64). We only ever pass `ok`: the rest is zero.
    #[link_name = "[static]response-outparam.set"]
    fn response_outparam_set(outparam: i32, is_err: i32, response_or_code: i32, p1: i32,
                             p2: i64, p3: i32, p4: i32, p5: i32, p6: i32);
}

// ---- the exports ---------------------------------------------------------------------

/// The allocator the host calls to lower lists and strings into this module (wit-bindgen
/// exports the same function): `old_len == 0` allocates, otherwise reallocates.
#[no_mangle]
pub unsafe extern "C" fn cabi_realloc(old: *mut u8, old_len: usize, align: usize,
                                      new_len: usize) -> *mut u8 {
    if new_len == 0 {
        return align as *mut u8;
    }
    let ptr = if old_len == 0 {
        alloc::alloc(Layout::from_size_align_unchecked(new_len, align))
    } else {
        alloc::realloc(old, Layout::from_size_align_unchecked(old_len, align), new_len)
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable();
    }
    ptr
}

/// `wasi:http/incoming-handler#handle(request: incoming-request, response-out:
/// response-outparam)`: two own handles in, nothing returned (so no `cabi_post_` function:
/// there is nothing the host must let the guest free after the call).
#[export_name = "wasi:http/incoming-handler@0.2.12#handle"]
pub extern "C" fn handle(request: i32, outparam: i32) {
    SERVED.fetch_add(1, Ordering::Relaxed);
    let req = Request::read(request);
    let leaf = req.path.split('?').next().unwrap_or("").rsplit('/').next().unwrap_or("");
    match leaf {
        "hello" => respond(outparam, 200, &[("content-type", "text/plain")],
                           &[b"hello from rust"]),
        "info" => {
            let json = format!(
                "{{\"method\":{},\"path\":{},\"x_test\":{},\"authorization\":{},\
                 \"cookie\":{},\"body_bytes\":{},\
                 \"body_fnv1a\":\"{:016x}\",\"served\":{}}}",
                json_str(req.method.as_bytes()), json_str(req.path.as_bytes()),
                json_list(&req.x_test), json_list(&req.authorization),
                json_list(&req.cookie), req.body.len(),
                fnv1a(&req.body), SERVED.load(Ordering::Relaxed));
            let length = req.body.len().to_string();
            respond(outparam, 200, &[("content-type", "application/json"),
                                     ("x-app", "proxy-rust"), ("x-body-bytes", &length)],
                    &[json.as_bytes()]);
        }
        "echo" => {
            let hash = format!("{:016x}", fnv1a(&req.body));
            respond(outparam, 200, &[("content-type", "application/octet-stream"),
                                     ("x-body-fnv1a", &hash)], &[&req.body]);
        }
        "panic" => {
            // The response is set and half its body written; then a Rust panic, which with
            // `panic = "abort"` is a wasm trap in the middle of the body.
            respond(outparam, 200, &[("content-type", "text/plain")], &[b"half a body", PANIC]);
        }
        _ => {
            let json = format!("{{\"error\":\"not found\",\"path\":{}}}",
                               json_str(req.path.as_bytes()));
            respond(outparam, 404, &[("content-type", "application/json")],
                    &[json.as_bytes()]);
        }
    }
}

/// A chunk `respond` does not write: it panics there.
const PANIC: &[u8] = b"<panic>";

/// Requests this instance served (the host keeps an instance for the next request after a
/// call that ended well, and discards it after a trap).
static SERVED: AtomicU32 = AtomicU32::new(0);

// ---- the request ---------------------------------------------------------------------

struct Request {
    method: String,
    path: String,
    x_test: Vec<Vec<u8>>,
    authorization: Vec<Vec<u8>>,
    cookie: Vec<Vec<u8>>,
    body: Vec<u8>,
}

/// A return area: 8-aligned and large enough for every result above.
#[repr(C, align(8))]
struct Ret([u8; 64]);

impl Ret {
    fn new() -> Self {
        Ret([0; 64])
    }
    fn ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr()
    }
    fn u8(&self, at: usize) -> u8 {
        self.0[at]
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }
    /// The (pointer, length) at `at` as the bytes it names, now ours (allocated by the host
    /// through `cabi_realloc` with alignment 1).
    unsafe fn bytes(&self, at: usize) -> Vec<u8> {
        let (ptr, len) = (self.i32(at) as *mut u8, self.i32(at + 4) as usize);
        Vec::from_raw_parts(ptr, len, len)
    }
}

const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
                            "TRACE", "PATCH"];

impl Request {
    fn read(request: i32) -> Request {
        unsafe {
            let mut ret = Ret::new();
            request_method(request, ret.ptr());
            let method = match ret.u8(0) as usize {
                n if n < METHODS.len() => METHODS[n].to_string(),
                _ => String::from_utf8_lossy(&ret.bytes(4)).into_owned(), // other(string)
            };

            let mut ret = Ret::new();
            request_path_with_query(request, ret.ptr());
            let path = match ret.u8(0) {
                0 => String::new(), // none
                _ => String::from_utf8_lossy(&ret.bytes(4)).into_owned(),
            };

            let headers = request_headers(request);
            let x_test = header(headers, "x-test");
            let authorization = header(headers, "authorization");
            let cookie = header(headers, "cookie");
            drop_fields(headers);

            let mut ret = Ret::new();
            request_consume(request, ret.ptr());
            assert!(ret.u8(0) == 0, "the body was consumed already");
            let body_handle = ret.i32(4);
            let body = read_body(body_handle);
            drop_incoming_body(body_handle);
            drop_incoming_request(request);
            Request { method, path, x_test, authorization, cookie, body }
        }
    }
}

/// Every value of header `name`, in the order the fields came.
unsafe fn header(fields: i32, name: &str) -> Vec<Vec<u8>> {
    let mut ret = Ret::new();
    fields_get(fields, name.as_ptr(), name.len(), ret.ptr());
    let (list, count) = (ret.i32(0) as *mut u8, ret.i32(4) as usize);
    let mut values = Vec::with_capacity(count);
    for i in 0..count {
        // each element is a list<u8>: (pointer, length), 8 bytes, 4-aligned
        let mut pair = Ret::new();
        core::ptr::copy_nonoverlapping(list.add(8 * i), pair.ptr(), 8);
        values.push(pair.bytes(0));
    }
    if count > 0 {
        alloc::dealloc(list, Layout::from_size_align_unchecked(8 * count, 4));
    }
    values
}

/// The whole body, read with `blocking-read` until the stream says `closed`.
unsafe fn read_body(body: i32) -> Vec<u8> {
    let mut ret = Ret::new();
    incoming_body_stream(body, ret.ptr());
    assert!(ret.u8(0) == 0, "the body's stream was taken already");
    let stream = ret.i32(4);
    let mut all = Vec::new();
    loop {
        let mut ret = Ret::new();
        input_blocking_read(stream, 64 * 1024, ret.ptr());
        if ret.u8(0) == 0 {
            all.extend_from_slice(&ret.bytes(4));
            continue;
        }
        if ret.u8(4) == 0 {
            // last-operation-failed(error): the host cut the body short (its cap, its
            // deadline, the client gone). The host answers the client itself then.
            drop_error(ret.i32(8));
        }
        break;
    }
    drop_input_stream(stream);
    all
}

// ---- the response --------------------------------------------------------------------

/// Set the response (status, headers) and write `chunks` as its body, in writes of at most
/// 4096 bytes (what `blocking-write-and-flush` promises to take at once).
fn respond(outparam: i32, status: u16, headers: &[(&str, &str)], chunks: &[&[u8]]) {
    unsafe {
        let fields = fields_new();
        for (name, value) in headers {
            let mut ret = Ret::new();
            fields_append(fields, name.as_ptr(), name.len(), value.as_ptr(), value.len(),
                          ret.ptr());
            assert!(ret.u8(0) == 0, "header refused");
        }
        let response = outgoing_response_new(fields);
        assert!(outgoing_response_set_status_code(response, status as i32) == 0);
        let mut ret = Ret::new();
        outgoing_response_body(response, ret.ptr());
        assert!(ret.u8(0) == 0);
        let body = ret.i32(4);
        let mut ret = Ret::new();
        outgoing_body_write(body, ret.ptr());
        assert!(ret.u8(0) == 0);
        let stream = ret.i32(4);
        // The response goes out before its body is written: the host may stream it.
        response_outparam_set(outparam, 0, response, 0, 0, 0, 0, 0, 0);
        for chunk in chunks {
            if chunk.as_ptr() == PANIC.as_ptr() {
                panic!("the Rust app panics mid-body on purpose");
            }
            for part in chunk.chunks(4096) {
                let mut ret = Ret::new();
                output_blocking_write_and_flush(stream, part.as_ptr(), part.len(), ret.ptr());
                if ret.u8(0) != 0 {
                    // closed (the response cap) or failed: stop writing, finish anyway
                    if ret.u8(4) == 0 {
                        drop_error(ret.i32(8));
                    }
                    break;
                }
            }
        }
        drop_output_stream(stream);
        let mut ret = Ret::new();
        outgoing_body_finish(body, 0, 0, ret.ptr());
    }
}

// ---- helpers -------------------------------------------------------------------------

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3))
}

/// `bytes` as a JSON string, each byte a character (as Latin-1 reads it).
fn json_list(values: &[Vec<u8>]) -> String {
    format!("[{}]", values.iter().map(|v| json_str(v)).collect::<Vec<_>>().join(","))
}

fn json_str(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\u{:04x}", b)),
        }
    }
    out.push('"');
    out
}
