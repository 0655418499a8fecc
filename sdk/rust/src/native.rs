//! The host functions on native targets, so plugin crates can `cargo test` their handlers.
//!
//! Same names and signatures as the wasm imports, backed by in-process state that
//! [`crate::testing`] sets up and inspects. log, config, kv, secrets, events and tasks follow
//! specs/abi.md §4; memory and vectors answer `UNAVAILABLE` (test them through omnicore);
//! http calls the closure given to [`crate::testing::on_http`].

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::jsonlite::{self, push_str, Value};
use crate::level::Level;

const UNAVAILABLE: i32 = -5;

pub(crate) type HttpFn =
    dyn Fn(&str, &[u8]) -> Result<(u16, Vec<(String, String)>, Vec<u8>), String>;

#[derive(Default)]
pub(crate) struct State {
    pub config: Option<Value>,
    pub min_level: Option<Level>,
    pub logs: Vec<(Level, String)>,
    pub kv: BTreeMap<String, Vec<u8>>,
    pub secrets: BTreeMap<String, Option<Vec<u8>>>,
    pub events: Vec<(String, Vec<u8>)>,
    pub tasks: BTreeMap<i64, (String, Vec<u8>, i64, bool)>,
    pub next_id: i64,
    pub http: Option<Box<HttpFn>>,
    blocks: Vec<Option<Vec<u8>>>,
}

thread_local! {
    pub(crate) static STATE: RefCell<State> = RefCell::new(State::default());
}

pub(crate) fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        &[]
    } else {
        core::slice::from_raw_parts(ptr, len)
    }
}

unsafe fn text(ptr: *const u8, len: usize) -> String {
    String::from_utf8_lossy(bytes(ptr, len)).into_owned()
}

/// §3.2: write when it fits, always return the full length.
unsafe fn write_result(data: &[u8], out: *mut u8, cap: usize) -> i32 {
    if data.len() <= cap {
        core::ptr::copy_nonoverlapping(data.as_ptr(), out, data.len());
    }
    data.len() as i32
}

/// §3.3 natively: a 64-bit pointer does not fit the packed result, so the "pointer" is an
/// index into a table that [`take_block`] empties.
fn block(data: Vec<u8>, is_err: bool) -> u64 {
    with(|s| {
        s.blocks.push(Some(data));
        let index = s.blocks.len() - 1;
        let len = s.blocks[index].as_ref().map_or(0, Vec::len) as u64;
        ((index as u64) << 32) | if is_err { 1 << 31 } else { 0 } | len
    })
}

pub(crate) fn take_block(packed: u64) -> Vec<u8> {
    with(|s| {
        s.blocks
            .get_mut((packed >> 32) as usize)
            .and_then(Option::take)
            .unwrap_or_default()
    })
}

fn to_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(n),
        Value::Str(s) => push_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                to_json(item, out);
            }
            out.push(']');
        }
        Value::Object(items) => {
            out.push('{');
            for (i, (k, item)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_str(out, k);
                out.push(':');
                to_json(item, out);
            }
            out.push('}');
        }
    }
}

pub(crate) mod log {
    use super::*;

    pub(crate) unsafe fn host_write(level: i32, msg: *const u8, msg_len: usize) {
        let level = match level {
            i32::MIN..=0 => Level::Trace,
            1 => Level::Debug,
            2 => Level::Info,
            3 => Level::Warn,
            _ => Level::Error,
        };
        let message = text(msg, msg_len);
        with(|s| {
            if level >= s.min_level.unwrap_or(Level::Info) {
                s.logs.push((level, message));
            }
        })
    }

    pub(crate) unsafe fn host_enabled(level: i32) -> i32 {
        with(|s| (level >= s.min_level.unwrap_or(Level::Info) as i32) as i32)
    }
}

pub(crate) mod config {
    use super::*;

    pub(crate) unsafe fn host_get(key: *const u8, key_len: usize, out: *mut u8, cap: usize) -> i32 {
        let key = text(key, key_len);
        let found = with(|s| {
            let mut v = s.config.as_ref()?;
            if !key.is_empty() {
                for part in key.split('.') {
                    v = v.get(part)?;
                }
            }
            Some(match v {
                Value::Str(t) => t.clone(),
                other => {
                    let mut t = String::new();
                    to_json(other, &mut t);
                    t
                }
            })
        });
        match (found, key.is_empty()) {
            (Some(v), _) => write_result(v.as_bytes(), out, cap),
            (None, true) => write_result(b"{}", out, cap),
            (None, false) => -1,
        }
    }
}

pub(crate) mod kv {
    use super::*;

    pub(crate) unsafe fn host_get(key: *const u8, key_len: usize, out: *mut u8, cap: usize) -> i32 {
        match with(|s| s.kv.get(&text(key, key_len)).cloned()) {
            Some(v) => write_result(&v, out, cap),
            None => -1,
        }
    }

    pub(crate) unsafe fn host_set(
        key: *const u8,
        key_len: usize,
        val: *const u8,
        val_len: usize,
    ) -> i32 {
        let (key, val) = (text(key, key_len), bytes(val, val_len).to_vec());
        if key.is_empty() || key.len() > 512 {
            return -3;
        }
        with(|s| s.kv.insert(key, val));
        0
    }

    pub(crate) unsafe fn host_delete(key: *const u8, key_len: usize) -> i32 {
        with(|s| s.kv.remove(&text(key, key_len)).is_some() as i32)
    }

    pub(crate) unsafe fn host_incr(
        key: *const u8,
        key_len: usize,
        delta: i64,
        out: *mut i64,
    ) -> i32 {
        let key = text(key, key_len);
        with(|s| {
            let current = match s.kv.get(&key) {
                None => 0,
                Some(v) => match String::from_utf8_lossy(v).parse::<i64>() {
                    Ok(n) => n,
                    Err(_) => return -3,
                },
            };
            let next = match current.checked_add(delta) {
                Some(n) => n,
                None => return -3,
            };
            s.kv.insert(key, next.to_string().into_bytes());
            *out = next;
            0
        })
    }

    pub(crate) unsafe fn host_list(
        prefix: *const u8,
        prefix_len: usize,
        out: *mut u8,
        cap: usize,
    ) -> i32 {
        let prefix = text(prefix, prefix_len);
        let mut json = String::from("[");
        with(|s| {
            for (i, k) in
                s.kv.keys()
                    .filter(|k| k.starts_with(&prefix))
                    .take(1000)
                    .enumerate()
            {
                if i > 0 {
                    json.push(',');
                }
                push_str(&mut json, k);
            }
        });
        json.push(']');
        write_result(json.as_bytes(), out, cap)
    }
}

pub(crate) mod secrets {
    use super::*;

    pub(crate) unsafe fn host_get(
        name: *const u8,
        name_len: usize,
        out: *mut u8,
        cap: usize,
    ) -> i32 {
        match with(|s| s.secrets.get(&text(name, name_len)).cloned()) {
            None => -2,
            Some(None) => -1,
            Some(Some(v)) => write_result(&v, out, cap),
        }
    }
}

pub(crate) mod events {
    use super::*;

    pub(crate) unsafe fn host_publish(
        topic: *const u8,
        topic_len: usize,
        payload: *const u8,
        payload_len: usize,
    ) -> i32 {
        let event = (text(topic, topic_len), bytes(payload, payload_len).to_vec());
        with(|s| s.events.push(event));
        0
    }
}

pub(crate) mod tasks {
    use super::*;

    pub(crate) unsafe fn host_enqueue(
        handler: *const u8,
        handler_len: usize,
        payload: *const u8,
        payload_len: usize,
        delay_ms: i64,
    ) -> i64 {
        let (handler, payload) = (
            text(handler, handler_len),
            bytes(payload, payload_len).to_vec(),
        );
        if delay_ms < 0 {
            return -3;
        }
        with(|s| {
            s.next_id += 1;
            let id = s.next_id;
            s.tasks.insert(id, (handler, payload, delay_ms, false));
            id
        })
    }

    pub(crate) unsafe fn host_cancel(id: i64) -> i32 {
        with(|s| match s.tasks.get_mut(&id) {
            None => -1,
            Some(task) if task.3 => 0,
            Some(task) => {
                task.3 = true;
                1
            }
        })
    }
}

pub(crate) mod memory {
    use super::*;

    pub(crate) unsafe fn host_remember(_tier: i32, _item: *const u8, _len: usize) -> i64 {
        UNAVAILABLE as i64
    }

    pub(crate) unsafe fn host_recall(
        _q: *const u8,
        _len: usize,
        _out: *mut u8,
        _cap: usize,
    ) -> i32 {
        UNAVAILABLE
    }

    pub(crate) unsafe fn host_forget(_id: i64) -> i32 {
        UNAVAILABLE
    }
}

pub(crate) mod vectors {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn host_upsert(
        _c: *const u8,
        _cl: usize,
        _i: *const u8,
        _il: usize,
        _v: *const f32,
        _dim: i32,
        _m: *const u8,
        _ml: usize,
    ) -> i32 {
        UNAVAILABLE
    }

    pub(crate) unsafe fn host_search(
        _c: *const u8,
        _cl: usize,
        _v: *const f32,
        _dim: i32,
        _k: i32,
    ) -> i64 {
        block(
            b"UNAVAILABLE: vectors are not simulated in native tests".to_vec(),
            true,
        ) as i64
    }

    pub(crate) unsafe fn host_delete(_c: *const u8, _cl: usize, _i: *const u8, _il: usize) -> i32 {
        UNAVAILABLE
    }

    pub(crate) unsafe fn host_query(
        c: *const u8,
        cl: usize,
        v: *const f32,
        dim: i32,
        k: i32,
        _f: *const u8,
        _fl: usize,
    ) -> i64 {
        host_search(c, cl, v, dim, k)
    }
}

pub(crate) mod http {
    use super::*;

    pub(crate) unsafe fn host_request(
        req: *const u8,
        req_len: usize,
        body: *const u8,
        body_len: usize,
    ) -> i64 {
        let (req, body) = (text(req, req_len), bytes(body, body_len).to_vec());
        // Taken out while it runs so the closure may itself use the testing API.
        let handler = with(|s| s.http.take());
        let answer = match &handler {
            None => Err(
                "UNAVAILABLE: no HTTP handler; set one with omnicore::testing::on_http".to_string(),
            ),
            Some(f) => f(&req, &body),
        };
        with(|s| s.http = handler);
        match answer {
            Err(message) => block(message.into_bytes(), true) as i64,
            Ok((status, headers, body)) => {
                let mut head = format!("{{\"status\":{},\"headers\":{{", status);
                for (i, (k, v)) in headers.iter().enumerate() {
                    if i > 0 {
                        head.push(',');
                    }
                    push_str(&mut head, k);
                    head.push(':');
                    push_str(&mut head, v);
                }
                head.push_str("}}");
                let mut data = (head.len() as u32).to_le_bytes().to_vec();
                data.extend_from_slice(head.as_bytes());
                data.extend_from_slice(&body);
                block(data, false) as i64
            }
        }
    }
}

pub(crate) fn parse_config(json: &str) -> Result<Value, String> {
    jsonlite::parse(json.as_bytes())
}
