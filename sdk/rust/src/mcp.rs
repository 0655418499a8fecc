//! `omnicore:mcp`: talk to the MCP client that called this handler as a tool (grant `mcp`;
//! asking also needs `mcp: {ask: [elicitation]}` or `[sampling]` from the operator).
//!
//! ```no_run
//! // Progress, against the call's progress token; a no-op outside MCP.
//! omnicore::mcp::progress(50.0, 100.0, "half way");
//! // Ask the user for a form's fields (MCP elicitation); the answer is the client's JSON.
//! let answer = omnicore::mcp::elicit(
//!     "Who are you?",
//!     r#"{"type":"object","properties":{"name":{"type":"string"}}}"#,
//! )?;
//! # Ok::<(), omnicore::Error>(())
//! ```
//!
//! A handler whose manifest object says `content = true` (`[plugin.handler.NAME]` in
//! `omnicore.toml`) answers MCP's tool result itself: `{"content": [...], "isError"?,
//! "structuredContent"?}`; [`text`], [`image`], [`audio`] and [`resource_text`] make the
//! content items.

use crate::b64;
use crate::error::Result;
use crate::host::take_block;
use crate::jsonlite::push_str;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "omnicore:mcp")]
extern "C" {
    #[link_name = "progress"]
    fn host_progress(progress: f64, total: f64, msg: *const u8, msg_len: usize) -> i32;
    #[link_name = "ask"]
    fn host_ask(req: *const u8, req_len: usize) -> i64;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::mcp::*;

/// Reports `progress` of `total` (`total <= 0`: unknown) with a message (empty: none) to the
/// client, if it asked for progress. True when it was sent.
pub fn progress(progress: f64, total: f64, message: &str) -> bool {
    // SAFETY: the host reads message_len bytes at message.
    unsafe { host_progress(progress, total, message.as_ptr(), message.len()) == 0 }
}

/// Sends the MCP request `method` with `params` (a JSON object, as MCP writes it) to the
/// client and waits for its result, at most until the call's deadline: the result's JSON.
/// `Denied`: the grant does not allow this question; `Unavailable`: no MCP client waits on
/// this call, it lacks the capability, or it did not answer in time.
pub fn ask(method: &str, params_json: &str) -> Result<String> {
    ask_as("", method, params_json)
}

/// [`ask`] under the question's own `key` (`[A-Za-z0-9_.-]{1,64}`; empty: the host names
/// it). On MCP 2026-07-28 a question is not sent mid-call: the host answers the call
/// `input_required` with its questions by key, the client calls again with the answers, and
/// the handler runs again from the start: each `ask` then returns its answer. So ask every
/// question before acting on any answer, and ask questions that do not depend on each other
/// before the first `?` (an unanswered question is `Unavailable` until the retry).
pub fn ask_as(key: &str, method: &str, params_json: &str) -> Result<String> {
    let mut req = String::from("{\"method\":");
    push_str(&mut req, method);
    if !key.is_empty() {
        req.push_str(",\"key\":");
        push_str(&mut req, key);
    }
    req.push_str(",\"params\":");
    req.push_str(params_json);
    req.push('}');
    // SAFETY: the host reads the request and returns a block it allocated with omni_alloc.
    let packed = unsafe { host_ask(req.as_ptr(), req.len()) };
    Ok(String::from_utf8(take_block(packed as u64)?)?)
}

/// Asks the user to fill in a form (`elicitation/create`): `schema_json` is the
/// `requestedSchema`. The answer's JSON: `{"action": "accept"|"decline"|"cancel", "content"?}`.
pub fn elicit(message: &str, schema_json: &str) -> Result<String> {
    let mut params = String::from("{\"message\":");
    push_str(&mut params, message);
    params.push_str(",\"requestedSchema\":");
    params.push_str(schema_json);
    params.push('}');
    ask("elicitation/create", &params)
}

/// Asks the client's model to answer `prompt` (`sampling/createMessage`) in at most
/// `max_tokens`: the answer's JSON (`{"role", "content", "model", "stopReason"?}`).
pub fn sample(prompt: &str, max_tokens: u32) -> Result<String> {
    let mut params = String::from("{\"messages\":[{\"role\":\"user\",\"content\":{\"type\":\"text\",\"text\":");
    push_str(&mut params, prompt);
    params.push_str(&format!("}}}}],\"maxTokens\":{}}}", max_tokens));
    ask("sampling/createMessage", &params)
}

/// A text content item.
pub fn text(text: &str) -> String {
    let mut j = String::from("{\"type\":\"text\",\"text\":");
    push_str(&mut j, text);
    j.push('}');
    j
}

fn media(kind: &str, data: &[u8], mime_type: &str) -> String {
    let mut j = format!("{{\"type\":\"{}\",\"data\":", kind);
    push_str(&mut j, &b64::encode(data));
    j.push_str(",\"mimeType\":");
    push_str(&mut j, mime_type);
    j.push('}');
    j
}

/// An image content item (`data` is encoded in base64 here).
pub fn image(data: &[u8], mime_type: &str) -> String {
    media("image", data, mime_type)
}

/// An audio content item (`data` is encoded in base64 here).
pub fn audio(data: &[u8], mime_type: &str) -> String {
    media("audio", data, mime_type)
}

/// An embedded text resource content item.
pub fn resource_text(uri: &str, mime_type: &str, text: &str) -> String {
    let mut j = String::from("{\"type\":\"resource\",\"resource\":{\"uri\":");
    push_str(&mut j, uri);
    j.push_str(",\"mimeType\":");
    push_str(&mut j, mime_type);
    j.push_str(",\"text\":");
    push_str(&mut j, text);
    j.push_str("}}");
    j
}

/// A tool result of `items` (made by the functions above); `is_error` marks a tool error.
pub fn result(items: &[String], is_error: bool) -> Vec<u8> {
    let mut j = String::from("{\"content\":[");
    j.push_str(&items.join(","));
    j.push(']');
    if is_error {
        j.push_str(",\"isError\":true");
    }
    j.push('}');
    j.into_bytes()
}
