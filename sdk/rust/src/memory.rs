//! `omnicore:memory`: tiered text memories for agents, recalled by relevance and recency
//! (grant `memory`).
//!
//! ```no_run
//! use omnicore::memory::{self, Tier};
//! let id = memory::remember(Tier::LongTerm, "the user prefers metric units")?;
//! let hits_json = memory::recall("units", 5)?;
//! memory::forget(id)?;
//! # Ok::<(), omnicore::Error>(())
//! ```

use crate::error::Result;
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

/// Remembers `text` in `tier`; returns the memory id (≥ 1).
pub fn remember(tier: Tier, text: &str) -> Result<i64> {
    let mut item = String::from("{\"text\":");
    push_str(&mut item, text);
    item.push('}');
    remember_json(tier, &item)
}

/// Remembers a raw item: JSON `{"text": str, "metadata": {...}?, "ttl_s": int?}`.
pub fn remember_json(tier: Tier, item: &str) -> Result<i64> {
    // SAFETY: the host only reads the item.
    let code = unsafe { host_remember(tier as i32, item.as_ptr(), item.len()) };
    check(code, "memory.remember")
}

/// The best `limit` memories for `query` in every tier, as a JSON array of
/// `{"id", "tier", "text", "metadata", "score", "created_at"}`.
pub fn recall(query: &str, limit: u32) -> Result<String> {
    let mut q = String::from("{\"query\":");
    push_str(&mut q, query);
    q.push_str(&format!(",\"limit\":{}}}", limit));
    recall_json(&q)
}

/// Recall with a raw query: JSON `{"query": str, "tiers": [int]?, "limit": int?}`.
pub fn recall_json(query: &str) -> Result<String> {
    // SAFETY: the host writes at most out_cap bytes at out.
    let bytes = read_into("memory.recall", |out, cap| unsafe {
        host_recall(query.as_ptr(), query.len(), out, cap)
    })?
    .unwrap_or_else(|| b"[]".to_vec());
    Ok(String::from_utf8(bytes)?)
}

/// Forgets memory `id`; `true` if it existed.
pub fn forget(id: i64) -> Result<bool> {
    // SAFETY: no pointers.
    let code = unsafe { host_forget(id) };
    check(code as i64, "memory.forget").map(|n| n == 1)
}
