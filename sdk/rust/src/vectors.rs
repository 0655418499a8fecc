//! `omnicore:vectors`: named collections of `f32` vectors with cosine search
//! (grant `vectors`).
//!
//! ```no_run
//! use omnicore::vectors;
//! vectors::upsert("docs", "a", &[0.1, 0.9, 0.0], r#"{"title":"A"}"#)?;
//! let hits_json = vectors::search("docs", &[0.1, 0.8, 0.1], 3)?;
//! // Only the vectors whose metadata has "title": "A":
//! let a_json = vectors::query("docs", &[0.1, 0.8, 0.1], 3, r#"{"title":"A"}"#)?;
//! vectors::delete("docs", "a")?;
//! # Ok::<(), omnicore::Error>(())
//! ```

use crate::error::{Error, Result, Status};
use crate::host::{check, take_block};

// Several namespaces import a function of the same name (`get`, `delete`); the wasm import
// module keeps them apart, which newer rustc's lint does not see.
#[cfg(target_arch = "wasm32")]
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "omnicore:vectors")]
extern "C" {
    #[link_name = "upsert"]
    fn host_upsert(
        coll: *const u8,
        coll_len: usize,
        id: *const u8,
        id_len: usize,
        vec: *const f32,
        dim: i32,
        meta: *const u8,
        meta_len: usize,
    ) -> i32;
    #[link_name = "search"]
    fn host_search(coll: *const u8, coll_len: usize, vec: *const f32, dim: i32, k: i32) -> i64;
    #[link_name = "delete"]
    fn host_delete(coll: *const u8, coll_len: usize, id: *const u8, id_len: usize) -> i32;
    #[link_name = "query"]
    fn host_query(
        coll: *const u8,
        coll_len: usize,
        vec: *const f32,
        dim: i32,
        k: i32,
        filter: *const u8,
        filter_len: usize,
    ) -> i64;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::vectors::*;

/// Inserts or replaces vector `id` in `collection` (created on first use with this
/// dimension). `metadata` is a JSON object or `""`.
pub fn upsert(collection: &str, id: &str, vector: &[f32], metadata: &str) -> Result<()> {
    // wasm32 is little-endian, so the slice already has the ABI's f32 LE layout.
    // SAFETY: the host only reads the given ranges.
    let code = unsafe {
        host_upsert(
            collection.as_ptr(),
            collection.len(),
            id.as_ptr(),
            id.len(),
            vector.as_ptr(),
            vector.len() as i32,
            metadata.as_ptr(),
            metadata.len(),
        )
    };
    check(code as i64, || {
        format!("vectors.upsert({:?}, {:?})", collection, id)
    })
    .map(|_| ())
}

/// The `k` nearest vectors, best first, as a JSON array of `{"id", "score", "metadata"}`.
pub fn search(collection: &str, vector: &[f32], k: u32) -> Result<String> {
    // SAFETY: the host reads the vector and returns a block it allocated with omni_alloc.
    let packed = unsafe {
        host_search(
            collection.as_ptr(),
            collection.len(),
            vector.as_ptr(),
            vector.len() as i32,
            k as i32,
        )
    };
    Ok(String::from_utf8(take_block(packed as u64)?)?)
}

/// Like [`search`], keeping only the vectors whose metadata equals every key of `filter`, a
/// JSON object of scalars (`r#"{"lang":"en","draft":false}"#`; `""` filters nothing). The
/// filter applies before the `k` best are taken, so a selective filter still finds `k`.
pub fn query(collection: &str, vector: &[f32], k: u32, filter: &str) -> Result<String> {
    // SAFETY: the host reads the ranges and returns a block it allocated with omni_alloc.
    let packed = unsafe {
        host_query(
            collection.as_ptr(),
            collection.len(),
            vector.as_ptr(),
            vector.len() as i32,
            k as i32,
            filter.as_ptr(),
            filter.len(),
        )
    };
    Ok(String::from_utf8(take_block(packed as u64)?)?)
}

/// Deletes vector `id`; `true` if it existed. A missing collection is a
/// [`Status::NotFound`] error.
pub fn delete(collection: &str, id: &str) -> Result<bool> {
    // SAFETY: the host only reads the given ranges.
    let code = unsafe { host_delete(collection.as_ptr(), collection.len(), id.as_ptr(), id.len()) };
    if code == -1 {
        return Err(Error::from_status(
            Status::NotFound,
            &format!("no vector collection {:?}", collection),
        ));
    }
    check(code as i64, || {
        format!("vectors.delete({:?}, {:?})", collection, id)
    })
    .map(|n| n == 1)
}
