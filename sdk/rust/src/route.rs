//! Route handlers: a handler the operator mapped to an HTTP route (specs/http-routes.md)
//! gets the request envelope and answers a response block. [`route_handler!`] exports
//! `fn(Request) -> Result<Response, Error>` functions as such handlers.
//!
//! ```ignore
//! use omnicore::route::{Request, Response};
//!
//! fn hello(req: Request) -> Result<Response, omnicore::Error> {
//!     let name = req.query_param("name").unwrap_or("world");
//!     Ok(Response::text(200, &format!("hello {}", name)))
//! }
//!
//! omnicore::route_handler! { hello => hello }
//! ```

use crate::error::Error;
use crate::jsonlite::{self, push_str, Value};

/// One request a route carries in (§2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Upper case, as sent.
    pub method: String,
    /// The path after the host's prefix, decoded, starting with `/`.
    pub path: String,
    /// The raw query string without `?`.
    pub query: String,
    /// The query parsed: name and its values, in order.
    pub query_params: Vec<(String, Vec<String>)>,
    /// The route pattern's variables.
    pub params: Vec<(String, String)>,
    /// Lower-case names; a repeated header's values joined with `", "`.
    pub headers: Vec<(String, String)>,
    /// The route's name.
    pub route: String,
    /// The URL the client asked for.
    pub url: String,
    /// The client's address.
    pub remote: Option<String>,
    /// What the host checked: `public`, `token`, `github` or `stripe`.
    pub auth_mode: String,
    /// The API token's user (`auth: token`).
    pub user: Option<String>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Request {
    /// The header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path variable `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query_params
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.first())
            .map(|s| s.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, Error> {
        Ok(core::str::from_utf8(&self.body)?)
    }

    /// The body decoded as JSON (feature `json`).
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::new(format!("invalid JSON body: {}", e)))
    }

    /// Decodes a request envelope (`head_len: u32 LE`, head JSON, body).
    pub fn decode(input: &[u8]) -> Result<Request, Error> {
        let bad = || Error::new("the input is not a request envelope (head_len, head JSON, body)");
        if input.len() < 4 {
            return Err(bad());
        }
        let n = u32::from_le_bytes([input[0], input[1], input[2], input[3]]) as usize;
        let end = 4usize
            .checked_add(n)
            .filter(|&e| e <= input.len())
            .ok_or_else(bad)?;
        let head = jsonlite::parse(&input[4..end]).map_err(|_| bad())?;
        let text = |key: &str| match head.get(key) {
            Some(Value::Str(s)) => s.clone(),
            _ => String::new(),
        };
        let pairs = |v: Option<&Value>| -> Vec<(String, String)> {
            match v {
                Some(Value::Object(items)) => items
                    .iter()
                    .filter_map(|(k, v)| match v {
                        Value::Str(s) => Some((k.clone(), s.clone())),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        let query_params = match head.get("query_params") {
            Some(Value::Object(items)) => items
                .iter()
                .map(|(k, v)| {
                    let values = match v {
                        Value::Array(vs) => vs
                            .iter()
                            .filter_map(|x| match x {
                                Value::Str(s) => Some(s.clone()),
                                _ => None,
                            })
                            .collect(),
                        _ => Vec::new(),
                    };
                    (k.clone(), values)
                })
                .collect(),
            _ => Vec::new(),
        };
        let auth = head.get("auth");
        let auth_text = |key: &str| match auth.and_then(|a| a.get(key)) {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        };
        Ok(Request {
            method: text("method"),
            path: text("path"),
            query: text("query"),
            query_params,
            params: pairs(head.get("params")),
            headers: pairs(head.get("headers")),
            route: text("route"),
            url: text("url"),
            remote: match head.get("remote") {
                Some(Value::Str(s)) => Some(s.clone()),
                _ => None,
            },
            auth_mode: auth_text("mode").unwrap_or_default(),
            user: auth_text("user"),
            body: input[end..].to_vec(),
        })
    }
}

/// The answer of a route handler (§3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status, 200-599.
    pub status: u16,
    /// Headers in order (a name may repeat: `set-cookie`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response of `status`.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, text: &str) -> Response {
        Response::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(text.as_bytes().to_vec())
    }

    /// An `application/json` response of JSON text the caller made.
    pub fn json_text(status: u16, json: &str) -> Response {
        Response::new(status)
            .header("content-type", "application/json")
            .body(json.as_bytes().to_vec())
    }

    /// An `application/json` response of `value` (feature `json`).
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(raw) => Response::new(status)
                .header("content-type", "application/json")
                .body(raw),
            Err(e) => Response::text(500, &format!("cannot encode the response: {}", e)),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The response block the host reads: `head_len: u32 LE`, head JSON, body.
    pub fn encode(&self) -> Vec<u8> {
        let mut head = format!("{{\"status\":{},\"headers\":{{", self.status);
        let mut names: Vec<&str> = Vec::new();
        for (k, _) in &self.headers {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                head.push(',');
            }
            push_str(&mut head, name);
            head.push_str(":[");
            let values = self.headers.iter().filter(|(k, _)| k == name);
            for (j, (_, v)) in values.enumerate() {
                if j > 0 {
                    head.push(',');
                }
                push_str(&mut head, v);
            }
            head.push(']');
        }
        head.push_str("}}");
        let mut out = Vec::with_capacity(4 + head.len() + self.body.len());
        out.extend_from_slice(&(head.len() as u32).to_le_bytes());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// Runs `handler` on one envelope: one that does not decode is answered 400, an error the
/// handler returns 500 "internal error" (a response, not a failed call). The error's text
/// goes to the plugin's log, never to the caller: it may hold what the caller must not see
/// (specs/http-routes.md §3.1; every SDK's helper does the same).
#[doc(hidden)]
pub fn serve(input: &[u8], handler: impl FnOnce(Request) -> Result<Response, Error>) -> Vec<u8> {
    let response = match Request::decode(input) {
        Err(e) => Response::text(400, &e.to_string()),
        Ok(req) => match handler(req) {
            Ok(r) => r,
            Err(e) => {
                crate::log::error(&e.to_string());
                Response::text(500, "internal error")
            }
        },
    };
    response.encode()
}

/// Exports route handlers: `route_handler!(export_name => function, ...)`, each `function` a
/// `fn(Request) -> Result<Response, Error>`.
#[macro_export]
macro_rules! route_handler {
    ($($(#[doc = $doc:expr])* $name:ident => $func:path),+ $(,)?) => {
        $(
            $crate::__describe!([$($doc),*] $name $crate::__rt::describe_doc(&[$($doc),*]));
            const _: () = {
                $crate::__rt::check_handler_name(stringify!($name));
                #[cfg_attr(target_arch = "wasm32", export_name = stringify!($name))]
                #[cfg_attr(
                    not(target_arch = "wasm32"),
                    export_name = concat!("__omnicore_handler_", stringify!($name))
                )]
                unsafe extern "C" fn __omnicore_handler(ptr: *const u8, len: usize) -> u64 {
                    $crate::__rt::call_bytes(ptr, len, |input: &[u8]| {
                        Ok::<Vec<u8>, $crate::Error>($crate::route::serve(input, $func))
                    })
                }
            };
        )+
    };
}
