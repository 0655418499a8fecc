//! `omnicore:redis`: Redis through a connector the operator declared and granted (grant
//! `redis: {connectors: [cache]}`; specs/abi.md §4.11).
//!
//! Every key lives under the plugin's prefix: the host prepends the connector's `key_prefix`
//! (default `omnicore:{plugin}:`) to each key and PUBLISH channel, so `visits` is
//! `omnicore:counter:visits` on the server and a plugin can never name a key outside it.
//!
//! ```no_run
//! use omnicore::redis;
//! let cache = redis::connect("cache");
//! let hits = cache.incr("hits")?;
//! if hits == 1 { cache.expire("hits", 60)?; }
//! cache.set_ex("greeting", "hi", 300)?;
//! let greeting: Option<String> = cache.get_text("greeting")?;
//! cache.rpush("queue", ["a", "b"])?;
//! let reply = cache.command("HINCRBY", &["stats".into(), "calls".into(), 1.into()])?;
//! # Ok::<(), omnicore::Error>(())
//! ```
//!
//! Only the commands of §4.11 exist (others are `Denied`); a wrong type is `Invalid` with
//! Redis's own message; a server that is down is `Unavailable`.

use crate::b64;
use crate::error::{Error, Result};
use crate::host::take_block;
use crate::jsonlite::{self, push_str, Value as Json};

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "omnicore:redis")]
extern "C" {
    #[link_name = "command"]
    pub(crate) fn host_command(
        conn: *const u8,
        conn_len: usize,
        req: *const u8,
        req_len: usize,
    ) -> i64;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::redis::*;

/// A command argument: text, an integer or bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// Bytes (sent as `{"$bytes": ...}`).
    Bytes(Vec<u8>),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Str(s.to_string())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::Str(s)
    }
}

impl From<&String> for Arg {
    fn from(s: &String) -> Arg {
        Arg::Str(s.clone())
    }
}

impl From<i64> for Arg {
    fn from(n: i64) -> Arg {
        Arg::Int(n)
    }
}

impl From<i32> for Arg {
    fn from(n: i32) -> Arg {
        Arg::Int(n as i64)
    }
}

impl From<u64> for Arg {
    fn from(n: u64) -> Arg {
        Arg::Int(n as i64)
    }
}

impl From<&[u8]> for Arg {
    fn from(b: &[u8]) -> Arg {
        Arg::Bytes(b.to_vec())
    }
}

impl From<Vec<u8>> for Arg {
    fn from(b: Vec<u8>) -> Arg {
        Arg::Bytes(b)
    }
}

/// A reply: nil, an integer, a string (bytes when not UTF-8), an array or a map (HGETALL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Nil (an absent key).
    Nil,
    /// An integer reply.
    Int(i64),
    /// A simple or bulk string that is valid UTF-8.
    Str(String),
    /// A bulk string that is not UTF-8.
    Bytes(Vec<u8>),
    /// An array reply.
    Array(Vec<Reply>),
    /// A map reply (HGETALL), in the server's order.
    Map(Vec<(String, Reply)>),
}

impl Reply {
    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The text, if this is a UTF-8 string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Reply::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes of a string reply (either kind); `None` for anything else.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Reply::Str(s) => Some(s.into_bytes()),
            Reply::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub(crate) fn read(json: &Json) -> core::result::Result<Reply, String> {
        Ok(match json {
            Json::Null => Reply::Nil,
            Json::Bool(b) => Reply::Int(*b as i64),
            Json::Number(n) => Reply::Int(n.parse().map_err(|_| format!("bad integer {}", n))?),
            Json::Str(s) => Reply::Str(s.clone()),
            Json::Array(items) => Reply::Array(
                items
                    .iter()
                    .map(Reply::read)
                    .collect::<core::result::Result<_, _>>()?,
            ),
            Json::Object(items) => match items.as_slice() {
                [(tag, Json::Str(text))] if tag == "$bytes" => Reply::Bytes(b64::decode(text)?),
                _ => Reply::Map(
                    items
                        .iter()
                        .map(|(k, v)| Reply::read(v).map(|r| (k.clone(), r)))
                        .collect::<core::result::Result<_, _>>()?,
                ),
            },
        })
    }
}

/// A handle on Redis connector `name` (nothing is checked until the first command).
pub fn connect(name: &str) -> Redis {
    Redis {
        name: name.to_string(),
    }
}

/// A Redis connector the operator granted, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redis {
    name: String,
}

fn unexpected(cmd: &str, reply: &Reply) -> Error {
    Error::new(format!("redis.{}: unexpected reply {:?}", cmd, reply))
}

impl Redis {
    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs any command of §4.11 with its arguments; the reply as it came.
    pub fn command(&self, cmd: &str, args: &[Arg]) -> Result<Reply> {
        let mut req = String::from("{\"cmd\":");
        push_str(&mut req, cmd);
        req.push_str(",\"args\":[");
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                req.push(',');
            }
            match a {
                Arg::Str(s) => push_str(&mut req, s),
                Arg::Int(n) => req.push_str(&n.to_string()),
                Arg::Bytes(b) => {
                    req.push_str("{\"$bytes\":");
                    push_str(&mut req, &b64::encode(b));
                    req.push('}');
                }
            }
        }
        req.push_str("]}");
        let conn = &self.name;
        // SAFETY: the host reads both ranges and returns a block it allocated with omni_alloc.
        let packed = unsafe { host_command(conn.as_ptr(), conn.len(), req.as_ptr(), req.len()) };
        let bytes = take_block(packed as u64)?;
        let json = jsonlite::parse(&bytes).map_err(|e| {
            Error::new(format!(
                "redis.{}: the host returned a malformed reply: {}",
                cmd, e
            ))
        })?;
        Reply::read(&json).map_err(|e| {
            Error::new(format!(
                "redis.{}: the host returned a malformed reply: {}",
                cmd, e
            ))
        })
    }

    fn int(&self, cmd: &str, args: &[Arg]) -> Result<i64> {
        let reply = self.command(cmd, args)?;
        reply.as_i64().ok_or_else(|| unexpected(cmd, &reply))
    }

    fn bulk(&self, cmd: &str, args: &[Arg]) -> Result<Option<Vec<u8>>> {
        match self.command(cmd, args)? {
            Reply::Nil => Ok(None),
            reply => match reply.clone().into_bytes() {
                Some(b) => Ok(Some(b)),
                None => Err(unexpected(cmd, &reply)),
            },
        }
    }

    fn list(&self, cmd: &str, args: &[Arg]) -> Result<Vec<Vec<u8>>> {
        match self.command(cmd, args)? {
            Reply::Array(items) => items
                .into_iter()
                .map(|r| r.clone().into_bytes().ok_or_else(|| unexpected(cmd, &r)))
                .collect(),
            reply => Err(unexpected(cmd, &reply)),
        }
    }

    fn with_values<I, A>(key: &str, values: I) -> Vec<Arg>
    where
        I: IntoIterator<Item = A>,
        A: Into<Arg>,
    {
        let mut args = vec![Arg::from(key)];
        args.extend(values.into_iter().map(Into::into));
        args
    }

    /// GET: the value at `key`, `None` if absent.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.bulk("GET", &[key.into()])
    }

    /// GET as UTF-8 text.
    pub fn get_text(&self, key: &str) -> Result<Option<String>> {
        match self.get(key)? {
            None => Ok(None),
            Some(b) => Ok(Some(String::from_utf8(b)?)),
        }
    }

    /// SET `key` to `value`.
    pub fn set(&self, key: &str, value: impl Into<Arg>) -> Result<()> {
        self.command("SET", &[key.into(), value.into()]).map(|_| ())
    }

    /// SET with EX: the key expires after `seconds`.
    pub fn set_ex(&self, key: &str, value: impl Into<Arg>, seconds: u64) -> Result<()> {
        self.command(
            "SET",
            &[key.into(), value.into(), "EX".into(), seconds.into()],
        )
        .map(|_| ())
    }

    /// INCR: adds 1; the new value.
    pub fn incr(&self, key: &str) -> Result<i64> {
        self.int("INCR", &[key.into()])
    }

    /// INCRBY: adds `delta`; the new value.
    pub fn incr_by(&self, key: &str, delta: i64) -> Result<i64> {
        self.int("INCRBY", &[key.into(), delta.into()])
    }

    /// EXPIRE: `true` when the key exists and now expires after `seconds`.
    pub fn expire(&self, key: &str, seconds: u64) -> Result<bool> {
        self.int("EXPIRE", &[key.into(), seconds.into()])
            .map(|n| n == 1)
    }

    /// TTL in seconds: `-1` without expiry, `-2` for an absent key.
    pub fn ttl(&self, key: &str) -> Result<i64> {
        self.int("TTL", &[key.into()])
    }

    /// DEL: `true` when the key existed.
    pub fn del(&self, key: &str) -> Result<bool> {
        self.int("DEL", &[key.into()]).map(|n| n > 0)
    }

    /// HGET: a field of the hash at `key`.
    pub fn hget(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>> {
        self.bulk("HGET", &[key.into(), field.into()])
    }

    /// HSET one field; `true` when the field is new.
    pub fn hset(&self, key: &str, field: &str, value: impl Into<Arg>) -> Result<bool> {
        self.int("HSET", &[key.into(), field.into(), value.into()])
            .map(|n| n == 1)
    }

    /// HGETALL: the fields and values, in the server's order.
    pub fn hgetall(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>> {
        match self.command("HGETALL", &[key.into()])? {
            Reply::Map(items) => items
                .into_iter()
                .map(|(k, r)| match r.clone().into_bytes() {
                    Some(b) => Ok((k, b)),
                    None => Err(unexpected("HGETALL", &r)),
                })
                .collect(),
            reply => Err(unexpected("HGETALL", &reply)),
        }
    }

    /// LPUSH values at the head; the list's new length.
    pub fn lpush<I: IntoIterator<Item = A>, A: Into<Arg>>(
        &self,
        key: &str,
        values: I,
    ) -> Result<i64> {
        self.int("LPUSH", &Self::with_values(key, values))
    }

    /// RPUSH values at the tail; the list's new length.
    pub fn rpush<I: IntoIterator<Item = A>, A: Into<Arg>>(
        &self,
        key: &str,
        values: I,
    ) -> Result<i64> {
        self.int("RPUSH", &Self::with_values(key, values))
    }

    /// LRANGE `start..=stop` (negative counts from the end: `0, -1` is the whole list).
    pub fn lrange(&self, key: &str, start: i64, stop: i64) -> Result<Vec<Vec<u8>>> {
        self.list("LRANGE", &[key.into(), start.into(), stop.into()])
    }

    /// SADD members; how many were new.
    pub fn sadd<I: IntoIterator<Item = A>, A: Into<Arg>>(
        &self,
        key: &str,
        members: I,
    ) -> Result<i64> {
        self.int("SADD", &Self::with_values(key, members))
    }

    /// SREM members; how many were there.
    pub fn srem<I: IntoIterator<Item = A>, A: Into<Arg>>(
        &self,
        key: &str,
        members: I,
    ) -> Result<i64> {
        self.int("SREM", &Self::with_values(key, members))
    }

    /// SMEMBERS: the set's members (no order).
    pub fn smembers(&self, key: &str) -> Result<Vec<Vec<u8>>> {
        self.list("SMEMBERS", &[key.into()])
    }

    /// PUBLISH on `channel` (under the plugin's prefix); how many subscribers got it.
    pub fn publish(&self, channel: &str, message: impl Into<Arg>) -> Result<i64> {
        self.int("PUBLISH", &[channel.into(), message.into()])
    }
}
