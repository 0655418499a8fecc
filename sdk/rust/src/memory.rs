//! `omnicore:memory`: tiered text memories for agents, recalled by relevance and recency
//! (grant `memory`).
//!
//! ```no_run
//! use omnicore::memory::{self, Memory, Recall, Tier};
//! let id = memory::remember(Tier::LongTerm, "the user prefers metric units")?;
//! let hits_json = memory::recall("units", 5)?;
//! // With metadata, an importance, an embedding of your own, and a filtered recall:
//! Memory::new("ordered a blue kettle")
//!     .metadata(r#"{"user":"ada"}"#)
//!     .importance(0.9)
//!     .vector(&[0.1, 0.7, 0.2])
//!     .remember(Tier::ShortTerm)?;
//! let ada_json = Recall::new("kettle").filter(r#"{"user":"ada"}"#).limit(3).run()?;
//! memory::forget(id)?;
//! # Ok::<(), omnicore::Error>(())
//! ```

use crate::error::{Error, Result, Status};
use crate::host::{check, read_into};
use crate::jsonlite::push_str;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "omnicore:memory")]
extern "C" {
    #[link_name = "remember"]
    fn host_remember(tier: i32, item: *const u8, item_len: usize) -> i64;
    #[link_name = "recall"]
    fn host_recall(query: *const u8, query_len: usize, out: *mut u8, out_cap: usize) -> i32;
    #[link_name = "forget"]
    fn host_forget(id: i64) -> i32;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::memory::*;

/// How long a memory lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// For the instance's TTL (default 1 h).
    Working = 0,
    /// Default 7 days.
    ShortTerm = 1,
    /// No expiry.
    LongTerm = 2,
}

/// Remembers `text` in `tier`; returns the memory id (≥ 1). [`Memory`] adds metadata,
/// importance, a vector and a lifetime.
pub fn remember(tier: Tier, text: &str) -> Result<i64> {
    Memory::new(text).remember(tier)
}

/// Remembers a raw item: JSON `{"text": str, "metadata": {...}?, "ttl_s": int?,
/// "importance": 0..1?, "vector": [f32...]?}`.
pub fn remember_json(tier: Tier, item: &str) -> Result<i64> {
    // SAFETY: the host only reads the item.
    let code = unsafe { host_remember(tier as i32, item.as_ptr(), item.len()) };
    check(code, || "memory.remember".into())
}

/// The best `limit` memories for `query` in every tier, as a JSON array of
/// `{"id", "tier", "text", "metadata", "score", "created_at"}`. [`Recall`] adds tiers, a
/// metadata filter and a vector.
pub fn recall(query: &str, limit: u32) -> Result<String> {
    Recall::new(query).limit(limit).run()
}

/// Recall with a raw query: JSON `{"query": str, "tiers": [int]?, "limit": int?,
/// "filter": {key: scalar}?, "vector": [f32...]?}`.
pub fn recall_json(query: &str) -> Result<String> {
    // SAFETY: the host writes at most out_cap bytes at out.
    let bytes = read_into(
        || "memory.recall".into(),
        |out, cap| unsafe { host_recall(query.as_ptr(), query.len(), out, cap) },
    )?
    .unwrap_or_else(|| b"[]".to_vec());
    Ok(String::from_utf8(bytes)?)
}

/// Forgets memory `id`; `true` if it existed.
pub fn forget(id: i64) -> Result<bool> {
    // SAFETY: no pointers.
    let code = unsafe { host_forget(id) };
    check(code as i64, || "memory.forget".into()).map(|n| n == 1)
}

/// A memory to [`remember`](Memory::remember): text plus optional metadata, importance,
/// vector and lifetime.
#[derive(Debug, Clone, Copy)]
pub struct Memory<'a> {
    text: &'a str,
    metadata: Option<&'a str>,
    importance: Option<f32>,
    vector: Option<&'a [f32]>,
    ttl_s: Option<u64>,
}

impl<'a> Memory<'a> {
    /// A memory of `text` (non-empty; at most the grant's `max_text_bytes`).
    pub fn new(text: &'a str) -> Memory<'a> {
        Memory {
            text,
            metadata: None,
            importance: None,
            vector: None,
            ttl_s: None,
        }
    }

    /// Metadata: a JSON object as text (`r#"{"user":"ada"}"#`), matched by
    /// [`Recall::filter`].
    pub fn metadata(mut self, json_object: &'a str) -> Memory<'a> {
        self.metadata = Some(json_object);
        self
    }

    /// How much it matters, 0 to 1 (default 0.5): part of the ranking, and a full tier
    /// evicts its least important memory first.
    pub fn importance(mut self, importance: f32) -> Memory<'a> {
        self.importance = Some(importance);
        self
    }

    /// An embedding of the text: recall with a [`Recall::vector`] then ranks by cosine
    /// similarity too. Every vector a plugin remembers has the same dimension.
    pub fn vector(mut self, vector: &'a [f32]) -> Memory<'a> {
        self.vector = Some(vector);
        self
    }

    /// A lifetime in seconds instead of the tier's default.
    pub fn ttl_s(mut self, seconds: u64) -> Memory<'a> {
        self.ttl_s = Some(seconds);
        self
    }

    /// Remembers it in `tier`; returns the memory id (≥ 1). Bad fields (importance outside
    /// 0..1, a non-finite or wrongly sized vector, metadata that is not an object) are
    /// [`Status::Invalid`]; text or metadata over the grant's limits [`Status::TooLarge`].
    pub fn remember(&self, tier: Tier) -> Result<i64> {
        let mut item = String::from("{\"text\":");
        push_str(&mut item, self.text);
        if let Some(meta) = self.metadata {
            item.push_str(",\"metadata\":");
            item.push_str(meta);
        }
        if let Some(importance) = self.importance {
            item.push_str(",\"importance\":");
            push_float(&mut item, importance, "memory.remember")?;
        }
        if let Some(vector) = self.vector {
            item.push_str(",\"vector\":");
            push_floats(&mut item, vector, "memory.remember")?;
        }
        if let Some(ttl) = self.ttl_s {
            item.push_str(&format!(",\"ttl_s\":{}", ttl));
        }
        item.push('}');
        remember_json(tier, &item)
    }
}

/// A recall query: words to look for, plus optional tiers, limit, metadata filter and
/// vector; [`run`](Recall::run) it.
#[derive(Debug, Clone, Copy)]
pub struct Recall<'a> {
    query: &'a str,
    tiers: Option<&'a [Tier]>,
    limit: Option<u32>,
    filter: Option<&'a str>,
    vector: Option<&'a [f32]>,
}

impl<'a> Recall<'a> {
    /// Memories relevant to `query` (split into words; `""` ranks by importance and
    /// recency alone).
    pub fn new(query: &'a str) -> Recall<'a> {
        Recall {
            query,
            tiers: None,
            limit: None,
            filter: None,
            vector: None,
        }
    }

    /// Only these tiers (default: all three).
    pub fn tiers(mut self, tiers: &'a [Tier]) -> Recall<'a> {
        self.tiers = Some(tiers);
        self
    }

    /// At most `limit` memories (default 10, at most 100).
    pub fn limit(mut self, limit: u32) -> Recall<'a> {
        self.limit = Some(limit);
        self
    }

    /// Only memories whose metadata equals every key of this JSON object of scalars
    /// (`r#"{"user":"ada","done":false}"#`).
    pub fn filter(mut self, json_object: &'a str) -> Recall<'a> {
        self.filter = Some(json_object);
        self
    }

    /// Rank by cosine similarity to `vector` too (memories remembered with a vector).
    pub fn vector(mut self, vector: &'a [f32]) -> Recall<'a> {
        self.vector = Some(vector);
        self
    }

    /// The best memories, best first, as a JSON array of
    /// `{"id", "tier", "text", "metadata", "score", "created_at"}`.
    pub fn run(&self) -> Result<String> {
        let mut q = String::from("{\"query\":");
        push_str(&mut q, self.query);
        if let Some(tiers) = self.tiers {
            q.push_str(",\"tiers\":[");
            for (i, tier) in tiers.iter().enumerate() {
                if i > 0 {
                    q.push(',');
                }
                q.push_str(&(*tier as i32).to_string());
            }
            q.push(']');
        }
        if let Some(limit) = self.limit {
            q.push_str(&format!(",\"limit\":{}", limit));
        }
        if let Some(filter) = self.filter {
            q.push_str(",\"filter\":");
            q.push_str(filter);
        }
        if let Some(vector) = self.vector {
            q.push_str(",\"vector\":");
            push_floats(&mut q, vector, "memory.recall")?;
        }
        q.push('}');
        recall_json(&q)
    }
}

// JSON has no NaN or infinity: refuse them here with the status the host would give.
fn push_float(out: &mut String, value: f32, what: &str) -> Result<()> {
    if !value.is_finite() {
        return Err(Error::from_status(
            Status::Invalid,
            &format!("{}: {} is not a finite number", what, value),
        ));
    }
    out.push_str(&value.to_string());
    Ok(())
}

fn push_floats(out: &mut String, values: &[f32], what: &str) -> Result<()> {
    out.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_float(out, *v, what)?;
    }
    out.push(']');
    Ok(())
}
