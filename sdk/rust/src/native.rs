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

pub(crate) type SqlFn =
    dyn Fn(&str, &str, &[crate::sql::Value]) -> Result<crate::testing::SqlAnswer, String>;

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
    pub sql: Option<Box<SqlFn>>,
    /// (connector, statement, params, transaction): BEGIN/COMMIT/ROLLBACK as statements.
    pub sql_log: Vec<(String, String, Vec<crate::sql::Value>, Option<i64>)>,
    pub sql_open: Vec<(i64, String)>,
    pub redis: BTreeMap<String, redis::Entry>,
    /// Seconds to live as set; the fake's clock does not move.
    pub redis_ttl: BTreeMap<String, i64>,
    pub redis_prefix: Option<String>,
    pub redis_published: Vec<(String, Vec<u8>)>,
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
                    jsonlite::write(other, &mut t);
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

/// The SQL fake: answers come from the closure given to [`crate::testing::on_sql`];
/// transactions are tracked so a test sees what was begun, committed and rolled back.
pub(crate) mod sql {
    use super::*;
    use crate::sql::parse_request;
    use crate::testing::SqlAnswer as Answer;

    unsafe fn run(
        conn: *const u8,
        conn_len: usize,
        req: *const u8,
        req_len: usize,
        query: bool,
    ) -> i64 {
        let conn = text(conn, conn_len);
        let req = bytes(req, req_len).to_vec();
        let answer = match parse_request(&req) {
            Err(e) => Err(format!("INVALID: {}", e)),
            Ok((sql, params, tx)) => {
                let tx_ok = tx.map_or(true, |id| {
                    with(|s| s.sql_open.iter().any(|(i, c)| *i == id && *c == conn))
                });
                if !tx_ok {
                    Err(format!(
                        "INVALID: transaction {} is not open on connector {}",
                        tx.unwrap_or(0),
                        conn
                    ))
                } else {
                    with(|s| {
                        s.sql_log
                            .push((conn.clone(), sql.clone(), params.clone(), tx))
                    });
                    // Taken out while it runs so the closure may itself use the testing API.
                    let handler = with(|s| s.sql.take());
                    let answer = match &handler {
                        None => Err(format!(
                            "UNAVAILABLE: connector {}: no SQL fake; set one with omnicore::testing::on_sql",
                            conn
                        )),
                        Some(f) => f(&conn, &sql, &params),
                    };
                    with(|s| s.sql = handler);
                    answer
                }
            }
        };
        let json = match answer {
            Err(message) => return block(message.into_bytes(), true) as i64,
            Ok(Answer::Rows(rows))
                if query && rows.rows.iter().any(|r| r.len() != rows.columns.len()) =>
            {
                // The host never answers so: a plugin tested on it would fail live.
                let message = format!(
                    "INVALID: the test's rows: a row's values are not one per column ({} columns)",
                    rows.columns.len()
                );
                return block(message.into_bytes(), true) as i64;
            }
            Ok(Answer::Rows(rows)) if query => rows.to_json(),
            Ok(Answer::Executed(done)) if !query => Ok(done.to_json()),
            Ok(Answer::Rows(_)) => Ok("{\"rows_affected\":0}".to_string()),
            Ok(Answer::Executed(_)) => Ok("{\"columns\":[],\"rows\":[]}".to_string()),
        };
        match json {
            Ok(j) => block(j.into_bytes(), false) as i64,
            Err(e) => block(e.message().as_bytes().to_vec(), true) as i64,
        }
    }

    pub(crate) unsafe fn host_query(conn: *const u8, cl: usize, req: *const u8, rl: usize) -> i64 {
        run(conn, cl, req, rl, true)
    }

    pub(crate) unsafe fn host_execute(
        conn: *const u8,
        cl: usize,
        req: *const u8,
        rl: usize,
    ) -> i64 {
        run(conn, cl, req, rl, false)
    }

    pub(crate) unsafe fn host_begin(conn: *const u8, conn_len: usize) -> i64 {
        let conn = text(conn, conn_len);
        with(|s| {
            s.next_id += 1;
            let id = s.next_id;
            s.sql_open.push((id, conn.clone()));
            s.sql_log
                .push((conn, "BEGIN".to_string(), Vec::new(), Some(id)));
            id
        })
    }

    fn end(tx: i64, what: &str) -> i32 {
        with(|s| match s.sql_open.iter().position(|(id, _)| *id == tx) {
            None => -1,
            Some(i) => {
                let (_, conn) = s.sql_open.remove(i);
                s.sql_log
                    .push((conn, what.to_string(), Vec::new(), Some(tx)));
                0
            }
        })
    }

    pub(crate) unsafe fn host_commit(tx: i64) -> i32 {
        end(tx, "COMMIT")
    }

    pub(crate) unsafe fn host_rollback(tx: i64) -> i32 {
        end(tx, "ROLLBACK")
    }
}

/// The Redis fake: an in-memory server with the host's key prefix (`omnicore:plugin:` unless
/// [`crate::testing::set_redis_prefix`] says otherwise) and its command list.
pub(crate) mod redis {
    use super::*;
    use crate::redis::Reply;
    use std::collections::{BTreeSet, VecDeque};

    #[derive(Clone, Debug)]
    pub(crate) enum Entry {
        Str(Vec<u8>),
        Hash(Vec<(String, Vec<u8>)>),
        List(VecDeque<Vec<u8>>),
        Set(BTreeSet<Vec<u8>>),
    }

    pub(crate) const DEFAULT_PREFIX: &str = "omnicore:plugin:";
    const WRONGTYPE: &str =
        "INVALID: WRONGTYPE Operation against a key holding the wrong kind of value";

    fn arg_bytes(v: &Value) -> Result<Vec<u8>, String> {
        match v {
            Value::Str(s) => Ok(s.clone().into_bytes()),
            Value::Number(n) => Ok(n.clone().into_bytes()),
            Value::Object(items) if items.len() == 1 && items[0].0 == "$bytes" => match &items[0].1
            {
                Value::Str(t) => crate::b64::decode(t),
                _ => Err("$bytes must hold a string".to_string()),
            },
            other => Err(format!("{:?} is not a Redis argument", other)),
        }
    }

    fn int_arg(args: &[Vec<u8>], i: usize) -> Result<i64, String> {
        let raw = args.get(i).ok_or("INVALID: wrong number of arguments")?;
        String::from_utf8_lossy(raw)
            .parse::<i64>()
            .map_err(|_| "INVALID: value is not an integer or out of range".to_string())
    }

    fn text_reply(b: Vec<u8>) -> Reply {
        match String::from_utf8(b) {
            Ok(s) => Reply::Str(s),
            Err(e) => Reply::Bytes(e.into_bytes()),
        }
    }

    fn exec(cmd: &str, args: Vec<Vec<u8>>, s: &mut State) -> Result<Reply, String> {
        let need = |n: usize| {
            if args.len() < n {
                Err("INVALID: wrong number of arguments".to_string())
            } else {
                Ok(())
            }
        };
        let prefix = s
            .redis_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        let key_of = |i: usize| format!("{}{}", prefix, String::from_utf8_lossy(&args[i]));
        need(1)?;
        let key = key_of(0);
        let db = &mut s.redis;
        let ttl = &mut s.redis_ttl;
        let entry = db.get(&key).cloned();
        macro_rules! str_or_nil {
            () => {
                match entry {
                    None => None,
                    Some(Entry::Str(v)) => Some(v),
                    Some(_) => return Err(WRONGTYPE.to_string()),
                }
            };
        }
        let add = |db: &mut BTreeMap<String, Entry>, by: i64| -> Result<Reply, String> {
            let current = match db.get(&key) {
                None => 0,
                Some(Entry::Str(v)) => String::from_utf8_lossy(v)
                    .parse::<i64>()
                    .map_err(|_| "INVALID: value is not an integer or out of range".to_string())?,
                Some(_) => return Err(WRONGTYPE.to_string()),
            };
            let next = current
                .checked_add(by)
                .ok_or("INVALID: increment or decrement would overflow")?;
            db.insert(key.clone(), Entry::Str(next.to_string().into_bytes()));
            Ok(Reply::Int(next))
        };
        Ok(match cmd {
            "GET" => str_or_nil!().map_or(Reply::Nil, text_reply),
            "SET" | "SETNX" => {
                need(2)?;
                let mut opts = args[2..]
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).to_uppercase());
                let (mut nx, mut xx, mut ex, mut keep) = (cmd == "SETNX", false, None, false);
                while let Some(o) = opts.next() {
                    match o.as_str() {
                        "NX" => nx = true,
                        "XX" => xx = true,
                        "KEEPTTL" => keep = true,
                        "EX" | "PX" => {
                            let n = opts
                                .next()
                                .and_then(|n| n.parse::<i64>().ok())
                                .ok_or("INVALID: syntax error")?;
                            ex = Some(if o == "EX" { n } else { (n + 999) / 1000 });
                        }
                        _ => return Err("INVALID: syntax error".to_string()),
                    }
                }
                let exists = entry.is_some();
                if (nx && exists) || (xx && !exists) {
                    return Ok(if cmd == "SETNX" {
                        Reply::Int(0)
                    } else {
                        Reply::Nil
                    });
                }
                db.insert(key.clone(), Entry::Str(args[1].clone()));
                match ex {
                    Some(n) => {
                        ttl.insert(key, n);
                    }
                    None if !keep => {
                        ttl.remove(&key);
                    }
                    None => {}
                }
                if cmd == "SETNX" {
                    Reply::Int(1)
                } else {
                    Reply::Str("OK".to_string())
                }
            }
            "GETDEL" => {
                let v = str_or_nil!();
                db.remove(&key);
                ttl.remove(&key);
                v.map_or(Reply::Nil, text_reply)
            }
            "MGET" => Reply::Array(
                (0..args.len())
                    .map(|i| match db.get(&key_of(i)) {
                        Some(Entry::Str(v)) => text_reply(v.clone()),
                        _ => Reply::Nil,
                    })
                    .collect(),
            ),
            "DEL" | "EXISTS" => {
                let mut n = 0;
                for i in 0..args.len() {
                    let k = key_of(i);
                    if cmd == "DEL" {
                        ttl.remove(&k);
                        n += db.remove(&k).is_some() as i64;
                    } else {
                        n += db.contains_key(&k) as i64;
                    }
                }
                Reply::Int(n)
            }
            "INCR" => add(db, 1)?,
            "DECR" => add(db, -1)?,
            "INCRBY" => add(db, int_arg(&args, 1)?)?,
            "DECRBY" => add(
                db,
                int_arg(&args, 1)?
                    .checked_neg()
                    .ok_or("INVALID: out of range")?,
            )?,
            "EXPIRE" | "PEXPIRE" => {
                let n = int_arg(&args, 1)?;
                let secs = if cmd == "EXPIRE" { n } else { (n + 999) / 1000 };
                if entry.is_none() {
                    Reply::Int(0)
                } else if secs <= 0 {
                    db.remove(&key);
                    ttl.remove(&key);
                    Reply::Int(1)
                } else {
                    ttl.insert(key, secs);
                    Reply::Int(1)
                }
            }
            "TTL" | "PTTL" => Reply::Int(match (entry.is_some(), ttl.get(&key)) {
                (false, _) => -2,
                (true, None) => -1,
                (true, Some(n)) => {
                    if cmd == "TTL" {
                        *n
                    } else {
                        n * 1000
                    }
                }
            }),
            "PERSIST" => Reply::Int(ttl.remove(&key).is_some() as i64),
            "HGET" | "HSET" | "HDEL" | "HGETALL" | "HINCRBY" | "HEXISTS" | "HLEN" => {
                let mut fields = match entry {
                    None => Vec::new(),
                    Some(Entry::Hash(h)) => h,
                    Some(_) => return Err(WRONGTYPE.to_string()),
                };
                let field = |i: usize| args.get(i).map(|f| String::from_utf8_lossy(f).into_owned());
                let find = |fields: &Vec<(String, Vec<u8>)>, f: &str| {
                    fields.iter().position(|(k, _)| k == f)
                };
                let reply = match cmd {
                    "HGET" => {
                        let f = field(1).ok_or("INVALID: wrong number of arguments")?;
                        find(&fields, &f).map_or(Reply::Nil, |i| text_reply(fields[i].1.clone()))
                    }
                    "HEXISTS" => {
                        let f = field(1).ok_or("INVALID: wrong number of arguments")?;
                        Reply::Int(find(&fields, &f).is_some() as i64)
                    }
                    "HLEN" => Reply::Int(fields.len() as i64),
                    "HGETALL" => Reply::Map(
                        fields
                            .iter()
                            .map(|(k, v)| (k.clone(), text_reply(v.clone())))
                            .collect(),
                    ),
                    "HSET" => {
                        if args.len() < 3 || args.len() % 2 == 0 {
                            return Err("INVALID: wrong number of arguments".to_string());
                        }
                        let mut new = 0;
                        for pair in args[1..].chunks(2) {
                            let f = String::from_utf8_lossy(&pair[0]).into_owned();
                            match find(&fields, &f) {
                                Some(i) => fields[i].1 = pair[1].clone(),
                                None => {
                                    fields.push((f, pair[1].clone()));
                                    new += 1;
                                }
                            }
                        }
                        Reply::Int(new)
                    }
                    "HDEL" => {
                        let before = fields.len();
                        for f in &args[1..] {
                            let f = String::from_utf8_lossy(f);
                            fields.retain(|(k, _)| *k != f);
                        }
                        Reply::Int((before - fields.len()) as i64)
                    }
                    _ => {
                        let f = field(1).ok_or("INVALID: wrong number of arguments")?;
                        let by = int_arg(&args, 2)?;
                        let i = match find(&fields, &f) {
                            Some(i) => i,
                            None => {
                                fields.push((f, b"0".to_vec()));
                                fields.len() - 1
                            }
                        };
                        let n = String::from_utf8_lossy(&fields[i].1)
                            .parse::<i64>()
                            .map_err(|_| "INVALID: hash value is not an integer".to_string())?
                            + by;
                        fields[i].1 = n.to_string().into_bytes();
                        Reply::Int(n)
                    }
                };
                if fields.is_empty() {
                    db.remove(&key);
                } else {
                    db.insert(key, Entry::Hash(fields));
                }
                reply
            }
            "LPUSH" | "RPUSH" | "LPOP" | "RPOP" | "LRANGE" | "LLEN" | "LTRIM" => {
                let mut list = match entry {
                    None => VecDeque::new(),
                    Some(Entry::List(l)) => l,
                    Some(_) => return Err(WRONGTYPE.to_string()),
                };
                let span = |list: &VecDeque<Vec<u8>>| -> Result<(usize, usize), String> {
                    let len = list.len() as i64;
                    let norm = |i: i64| if i < 0 { (len + i).max(0) } else { i };
                    let (a, b) = (
                        norm(int_arg(&args, 1)?),
                        norm(int_arg(&args, 2)?).min(len - 1),
                    );
                    Ok(if a > b || len == 0 {
                        (0, 0)
                    } else {
                        (a as usize, b as usize + 1)
                    })
                };
                let reply = match cmd {
                    "LPUSH" | "RPUSH" => {
                        need(2)?;
                        for v in &args[1..] {
                            if cmd == "LPUSH" {
                                list.push_front(v.clone())
                            } else {
                                list.push_back(v.clone())
                            }
                        }
                        Reply::Int(list.len() as i64)
                    }
                    "LPOP" => list.pop_front().map_or(Reply::Nil, text_reply),
                    "RPOP" => list.pop_back().map_or(Reply::Nil, text_reply),
                    "LLEN" => Reply::Int(list.len() as i64),
                    "LRANGE" => {
                        let (a, b) = span(&list)?;
                        Reply::Array(
                            list.iter()
                                .skip(a)
                                .take(b - a)
                                .cloned()
                                .map(text_reply)
                                .collect(),
                        )
                    }
                    _ => {
                        let (a, b) = span(&list)?;
                        list = list.iter().skip(a).take(b - a).cloned().collect();
                        Reply::Str("OK".to_string())
                    }
                };
                if list.is_empty() {
                    db.remove(&key);
                } else {
                    db.insert(key, Entry::List(list));
                }
                reply
            }
            "SADD" | "SREM" | "SMEMBERS" | "SISMEMBER" | "SCARD" => {
                let mut set = match entry {
                    None => BTreeSet::new(),
                    Some(Entry::Set(s)) => s,
                    Some(_) => return Err(WRONGTYPE.to_string()),
                };
                let reply = match cmd {
                    "SADD" => Reply::Int(
                        args[1..]
                            .iter()
                            .filter(|m| set.insert((*m).clone()))
                            .count() as i64,
                    ),
                    "SREM" => {
                        Reply::Int(args[1..].iter().filter(|m| set.remove(*m)).count() as i64)
                    }
                    "SISMEMBER" => {
                        need(2)?;
                        Reply::Int(set.contains(&args[1]) as i64)
                    }
                    "SCARD" => Reply::Int(set.len() as i64),
                    _ => Reply::Array(set.iter().cloned().map(text_reply).collect()),
                };
                if set.is_empty() {
                    db.remove(&key);
                } else {
                    db.insert(key, Entry::Set(set));
                }
                reply
            }
            _ => {
                // PUBLISH: recorded with the channel under the prefix, as the server sees it.
                need(2)?;
                s.redis_published.push((key, args[1].clone()));
                Reply::Int(0)
            }
        })
    }

    /// The host's answers, which the command list is read from (sdk/contract/host.json, in the
    /// SDK tree beside this crate, in a checkout and in omnicore's wheel alike).
    const CONTRACT: &str = include_str!("../../contract/host.json");

    /// §4.11's command `cmd`: its least and most argument counts (None: no most), or None
    /// when the host does not allow it.
    fn argument_counts(cmd: &str) -> Option<(usize, Option<usize>)> {
        let doc = jsonlite::parse(CONTRACT.as_bytes()).expect("sdk/contract/host.json is JSON");
        let count = |v: &Value| match v {
            Value::Number(n) => n.parse::<usize>().ok(),
            _ => None,
        };
        match doc.get("redis")?.get("commands")?.get(cmd)? {
            Value::Array(spec) => Some((count(spec.first()?)?, count(spec.get(1)?))),
            _ => None,
        }
    }

    pub(crate) unsafe fn host_command(
        conn: *const u8,
        conn_len: usize,
        req: *const u8,
        req_len: usize,
    ) -> i64 {
        let _conn = text(conn, conn_len);
        let answer = (|| -> Result<Reply, String> {
            let doc =
                jsonlite::parse(bytes(req, req_len)).map_err(|e| format!("INVALID: {}", e))?;
            let cmd = match doc.get("cmd") {
                Some(Value::Str(c)) => c.to_uppercase(),
                _ => return Err("INVALID: the request has no cmd".to_string()),
            };
            let (least, most) = match argument_counts(&cmd) {
                Some(counts) => counts,
                None => return Err(format!("DENIED: redis command '{}' is not allowed", cmd)),
            };
            let args = match doc.get("args") {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(arg_bytes)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("INVALID: {}", e))?,
                None => Vec::new(),
                _ => return Err("INVALID: args must be an array".to_string()),
            };
            if args.len() < least || most.map_or(false, |most| args.len() > most) {
                let counts = match most {
                    Some(most) if most == least => least.to_string(),
                    Some(most) => format!("{} to {}", least, most),
                    None => format!("{} or more", least),
                };
                return Err(format!(
                    "INVALID: {} takes {} arguments, got {}",
                    cmd,
                    counts,
                    args.len()
                ));
            }
            with(|s| exec(&cmd, args, s))
        })();
        match answer {
            Ok(reply) => {
                let mut out = String::new();
                reply.write(&mut out);
                block(out.into_bytes(), false) as i64
            }
            Err(message) => block(message.into_bytes(), true) as i64,
        }
    }
}

pub(crate) mod mcp {
    use super::*;

    // Native tests have no MCP client: progress reaches nobody, questions are unavailable.
    pub(crate) unsafe fn host_progress(_p: f64, _t: f64, _m: *const u8, _ml: usize) -> i32 {
        -1
    }

    pub(crate) unsafe fn host_ask(_r: *const u8, _rl: usize) -> i64 {
        block(
            b"UNAVAILABLE: no MCP client in native tests".to_vec(),
            true,
        ) as i64
    }
}
