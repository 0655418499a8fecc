//! `omnicore:http`: outbound HTTP to hosts the operator allowed, directly or through a
//! named connector whose credentials the host adds (grant `http`).
//!
//! ```no_run
//! use omnicore::http::Request;
//! let resp = Request::get("https://api.example.com/items").header("accept", "application/json").send()?;
//! if resp.status == 200 { let _body: &[u8] = &resp.body; }
//! // Through a connector: the host joins its base URL and adds its credentials.
//! let repo = Request::connector("github", "GET", "/repos/rust-lang/rust").send()?;
//! # Ok::<(), omnicore::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::host::take_block;
use crate::jsonlite::{self, push_str, Value};

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "omnicore:http")]
extern "C" {
    #[link_name = "request"]
    fn host_request(req: *const u8, req_len: usize, body: *const u8, body_len: usize) -> i64;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::http::*;

enum Target {
    Url(String),
    Connector { name: String, path: String },
}

/// An outbound request; build it, then [`send`](Request::send) it.
pub struct Request {
    method: String,
    target: Target,
    headers: Vec<(String, String)>,
    timeout_ms: Option<u32>,
    body: Vec<u8>,
}

/// A response: status, headers (names as the host reports them) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Response headers in the host's order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str> {
        Ok(core::str::from_utf8(&self.body)?)
    }
}

impl Request {
    /// A request with any method to an absolute URL.
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_string(),
            target: Target::Url(url.to_string()),
            headers: Vec::new(),
            timeout_ms: None,
            body: Vec::new(),
        }
    }

    /// A `GET` request.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    /// A `POST` request with a body.
    pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Request {
        Request::new("POST", url).body(body)
    }

    /// A request through connector `name` to `path` below its base URL.
    pub fn connector(name: &str, method: &str, path: &str) -> Request {
        Request {
            target: Target::Connector {
                name: name.to_string(),
                path: path.to_string(),
            },
            ..Request::new(method, "")
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets a timeout below the grant's (the grant's limit still applies).
    pub fn timeout_ms(mut self, ms: u32) -> Request {
        self.timeout_ms = Some(ms);
        self
    }

    fn head_json(&self) -> String {
        let mut j = String::from("{\"method\":");
        push_str(&mut j, &self.method);
        match &self.target {
            Target::Url(url) => {
                j.push_str(",\"url\":");
                push_str(&mut j, url);
            }
            Target::Connector { name, path } => {
                j.push_str(",\"connector\":");
                push_str(&mut j, name);
                j.push_str(",\"path\":");
                push_str(&mut j, path);
            }
        }
        j.push_str(",\"headers\":{");
        for (i, (k, v)) in self.headers.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            push_str(&mut j, k);
            j.push(':');
            push_str(&mut j, v);
        }
        j.push('}');
        if let Some(ms) = self.timeout_ms {
            j.push_str(&format!(",\"timeout_ms\":{}", ms));
        }
        j.push('}');
        j
    }

    /// Sends the request. A refused host, a timeout or an upstream failure is an error whose
    /// [`status`](Error::status) says which (`Denied`, `Unavailable`, ...). Any HTTP status,
    /// 4xx and 5xx included, is a successful [`Response`].
    pub fn send(&self) -> Result<Response> {
        let head = self.head_json();
        #[cfg(any(target_os = "wasi", not(target_arch = "wasm32")))]
        crate::testing::answer_http(&head, &self.body);
        // SAFETY: the host reads both ranges and returns a block it allocated with omni_alloc.
        let packed = unsafe {
            host_request(
                head.as_ptr(),
                head.len(),
                self.body.as_ptr(),
                self.body.len(),
            )
        };
        parse_response(take_block(packed as u64)?)
    }
}

/// The §4.7 response block: `head_len: u32 LE`, JSON head, body.
fn parse_response(block: Vec<u8>) -> Result<Response> {
    let bad = |why: &str| Error::new(format!("http.request: malformed response block: {}", why));
    if block.len() < 4 {
        return Err(bad("shorter than its length prefix"));
    }
    let head_len = u32::from_le_bytes([block[0], block[1], block[2], block[3]]) as usize;
    let head_end = 4usize
        .checked_add(head_len)
        .filter(|&e| e <= block.len())
        .ok_or_else(|| bad("head longer than the block"))?;
    let head = jsonlite::parse(&block[4..head_end]).map_err(|e| bad(&e))?;
    let status = match head.get("status") {
        Some(Value::Number(n)) => n.parse::<u16>().map_err(|_| bad("status out of range"))?,
        _ => return Err(bad("no status")),
    };
    let mut headers = Vec::new();
    if let Some(Value::Object(items)) = head.get("headers") {
        for (k, v) in items {
            if let Value::Str(s) = v {
                headers.push((k.clone(), s.clone()));
            }
        }
    }
    Ok(Response {
        status,
        headers,
        body: block[head_end..].to_vec(),
    })
}
