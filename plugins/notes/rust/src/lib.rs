//! The notes example: notes kept in `omnicore::memory` (long-term tier) and found again two
//! ways — by their words (`find`: the host's full-text ranking) and by likeness (`similar`:
//! cosine search in `omnicore::vectors` over an embedding this plugin computes itself).
//!
//! - `add {"text", "tag"?}` remembers the note and indexes its vector; `{"id"}`.
//! - `find {"query", "limit"?, "tag"?}` recalls notes by their words (BM25, recency,
//!   importance), only those with that tag if one is given.
//! - `similar {"text", "k"?, "tag"?}` the `k` notes whose embedding is nearest to the text's.
//! - `forget {"id"}` forgets the note and its vector.
//! - `embed {"text"}` shows the vector `similar` uses.
//!
//! The embedding needs no model: each word (and each of its character trigrams) is hashed
//! into one of [`DIM`] signed buckets, so notes sharing words or word pieces ("recipe",
//! "recipes") point the same way. notes-js computes the very same vector.

use omnicore::memory::{self, Tier};
use omnicore::{json_handler, vectors, Error};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Dimensions of the embedding (and of the `notes` collection).
pub const DIM: usize = 256;
const COLLECTION: &str = "notes";
const SNIPPET_CHARS: usize = 200;

omnicore::json_schema! {
    #[derive(Deserialize)]
    struct AddIn {
        text: String,
        tag: Option<String>,
    }
}

omnicore::json_schema! {
    #[derive(Deserialize)]
    struct FindIn {
        query: String,
        limit: Option<u32>,
        tag: Option<String>,
    }
}

omnicore::json_schema! {
    #[derive(Deserialize)]
    struct SimilarIn {
        text: String,
        k: Option<u32>,
        tag: Option<String>,
    }
}

omnicore::json_schema! {
    #[derive(Deserialize)]
    struct IdIn {
        id: i64,
    }
}

omnicore::json_schema! {
    #[derive(Deserialize)]
    struct TextIn {
        text: String,
    }
}

omnicore::json_schema! {
    #[derive(Serialize)]
    struct Note {
        id: i64,
        text: String,
        tag: Option<String>,
        score: f64,
    }
}

/// FNV-1a over a word's code points, so the JS example hashes exactly the same way.
fn fnv1a(chars: &[char]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &c in chars {
        h ^= c as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn add_hashed(v: &mut [f32], chars: &[char], weight: f32) {
    let h = fnv1a(chars);
    let sign = if (h >> 16) & 1 == 1 { -1.0 } else { 1.0 };
    v[(h as usize) % DIM] += sign * weight;
}

/// The words of `text`: runs of ASCII letters and digits, or of any non-ASCII characters,
/// lower-cased (ASCII only, so both languages agree without Unicode tables).
fn words(text: &str) -> Vec<Vec<char>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || !c.is_ascii() {
            cur.push(c.to_ascii_lowercase());
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The unit-length embedding of `text`; an error when it has no words.
pub fn embedding(text: &str) -> Result<Vec<f32>, Error> {
    let mut v = vec![0.0f32; DIM];
    for word in words(text) {
        add_hashed(&mut v, &word, 2.0);
        let mut padded = vec!['<'];
        padded.extend(&word);
        padded.push('>');
        for tri in padded.windows(3) {
            add_hashed(&mut v, tri, 1.0);
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return Err(Error::new("text has no words to embed"));
    }
    Ok(v.into_iter().map(|x| x / norm).collect())
}

/// The metadata filter of a tag (`{"tag": ...}`), or none.
fn tag_filter(tag: &Option<String>) -> String {
    tag.as_ref()
        .map(|t| json!({ "tag": t }).to_string())
        .unwrap_or_default()
}

fn snippet(text: &str) -> String {
    text.chars().take(SNIPPET_CHARS).collect()
}

fn add(input: AddIn) -> Result<Value, Error> {
    if input.text.trim().is_empty() {
        return Err(Error::new("text must not be empty"));
    }
    let vector = embedding(&input.text)?;
    let mut meta = json!({});
    if let Some(tag) = &input.tag {
        meta["tag"] = json!(tag);
    }
    let item = json!({ "text": input.text, "metadata": meta }).to_string();
    let id = memory::remember_json(Tier::LongTerm, &item)?;
    meta["text"] = json!(snippet(&input.text));
    if let Err(err) = vectors::upsert(COLLECTION, &id.to_string(), &vector, &meta.to_string()) {
        // Nothing half-written: a note without its vector would never be found by likeness.
        let _ = memory::forget(id);
        return Err(err);
    }
    Ok(json!({ "id": id }))
}

fn find(input: FindIn) -> Result<Vec<Note>, Error> {
    let limit = input.limit.unwrap_or(10).clamp(1, 100);
    let filter = tag_filter(&input.tag);
    let mut recall = memory::Recall::new(&input.query).limit(limit);
    if !filter.is_empty() {
        recall = recall.filter(&filter);
    }
    let found: Vec<Value> = serde_json::from_str(&recall.run()?)?;
    Ok(found
        .iter()
        .map(|m| Note {
            id: m["id"].as_i64().unwrap_or(0),
            text: m["text"].as_str().unwrap_or("").to_string(),
            tag: m["metadata"]["tag"].as_str().map(str::to_string),
            score: m["score"].as_f64().unwrap_or(0.0),
        })
        .collect())
}

fn similar(input: SimilarIn) -> Result<Vec<Note>, Error> {
    let k = input.k.unwrap_or(5).clamp(1, 100);
    let vector = embedding(&input.text)?;
    // The filter applies before the k best are taken, so a rare tag still finds k notes.
    let hits = match vectors::query(COLLECTION, &vector, k, &tag_filter(&input.tag)) {
        Ok(json) => json,
        // No note was added yet, so there is no collection to search.
        Err(e) if e.status() == Some(omnicore::Status::NotFound) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let hits: Vec<Value> = serde_json::from_str(&hits)?;
    Ok(hits
        .iter()
        .map(|h| Note {
            id: h["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
            text: h["metadata"]["text"].as_str().unwrap_or("").to_string(),
            tag: h["metadata"]["tag"].as_str().map(str::to_string),
            score: h["score"].as_f64().unwrap_or(0.0),
        })
        .collect())
}

fn forget(input: IdIn) -> Result<Value, Error> {
    let forgotten = memory::forget(input.id)?;
    if forgotten {
        match vectors::delete(COLLECTION, &input.id.to_string()) {
            Ok(_) => {}
            Err(e) if e.status() == Some(omnicore::Status::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json!({ "forgotten": forgotten }))
}

fn embed(input: TextIn) -> Result<Value, Error> {
    Ok(json!({ "vector": embedding(&input.text)? }))
}

json_handler! {
    /// Remembers a note (with an optional tag) and returns its id.
    add => add,
    /// Finds notes by their words (full-text ranking), optionally only those with a tag.
    find => find,
    /// Finds the `k` notes most like a text (cosine similarity of embeddings), optionally only those with a tag.
    similar => similar,
    /// Forgets a note and its vector by id.
    forget => forget,
    /// Shows the embedding vector of a text, as `similar` computes it.
    embed => embed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_word_pieces_point_the_same_way() {
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let recipe = embedding("recipe").unwrap();
        let recipes = embedding("Recipes!").unwrap();
        let engine = embedding("engine oil").unwrap();
        // The two words share 5 of their trigrams (6 and 7) and not the words themselves
        // (weight 2 each): 5 / sqrt(10 * 11) = 0.48 when no hashes collide.
        assert!(dot(&recipe, &recipes) > 0.45);
        assert!(dot(&recipe, &engine) < dot(&recipe, &recipes));
        assert!(embedding(" ?! ").is_err());
    }
}
