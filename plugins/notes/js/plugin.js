// The notes example: notes kept in memory (long-term tier) and found again two ways — by
// their words (find: the host's full-text ranking) and by likeness (similar: cosine search in
// vectors over an embedding this plugin computes itself).
//
// - add {"text", "tag"?} remembers the note and indexes its vector; {"id"}.
// - find {"query", "limit"?, "tag"?} recalls notes by their words (BM25, recency,
//   importance), only those with that tag if one is given.
// - similar {"text", "k"?, "tag"?} the k notes whose embedding is nearest to the text's.
// - forget {"id"} forgets the note and its vector.
// - embed {"text"} shows the vector similar uses.
//
// The embedding needs no model: each word (and each of its character trigrams) is hashed into
// one of DIM signed buckets, so notes sharing words or word pieces ("recipe", "recipes") point
// the same way. notes-rust computes the very same vector.
import { json, memory, vectors, Tier, InputError, OmniHostError } from "omnicore";

const DIM = 256;
const COLLECTION = "notes";
const SNIPPET_CHARS = 200;

function input(raw, fields, required) {
  const req = json(raw);
  if (req === null || typeof req !== "object" || Array.isArray(req)) {
    throw new InputError(`invalid input: expected a JSON object with ${fields.join(", ")}`);
  }
  // A field it does not know is ignored, as in every SDK (specs/abi.md §2.7).
  if (typeof req[required] !== "string") {
    throw new InputError(`invalid input: "${required}" must be a string`);
  }
  return req;
}

function count(value, name, fallback) {
  if (value === undefined || value === null) return fallback;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InputError(`invalid input: "${name}" must be a non-negative integer`);
  }
  return Math.min(Math.max(value, 1), 100);
}

// FNV-1a over a word's code points, so notes-rust hashes exactly the same way.
function addHashed(v, chars, weight) {
  let h = 0x811c9dc5;
  for (const c of chars) h = Math.imul(h ^ c.codePointAt(0), 0x01000193) >>> 0;
  v[h % DIM] += ((h >>> 16) & 1 ? -1 : 1) * weight;
}

// Runs of ASCII letters and digits, or of any non-ASCII characters, lower-cased (ASCII only,
// so both languages agree without Unicode tables).
function words(text) {
  const out = [];
  let cur = [];
  for (const c of text) {
    if (/[A-Za-z0-9]/.test(c) || c.codePointAt(0) > 0x7f) cur.push(c.length === 1 && c < "\x80" ? c.toLowerCase() : c);
    else if (cur.length) { out.push(cur); cur = []; }
  }
  if (cur.length) out.push(cur);
  return out;
}

export function embedding(text) {
  const v = new Float32Array(DIM);
  for (const word of words(text)) {
    addHashed(v, word, 2);
    const padded = ["<", ...word, ">"];
    for (let i = 0; i + 3 <= padded.length; i++) addHashed(v, padded.slice(i, i + 3), 1);
  }
  const norm = Math.hypot(...v);
  if (norm === 0) throw new InputError("text has no words to embed");
  return v.map((x) => x / norm);
}

export function add(raw) {
  const req = input(raw, ["text", "tag"], "text");
  if (!req.text.trim()) throw new InputError("text must not be empty");
  if (req.tag !== undefined && typeof req.tag !== "string") {
    throw new InputError('invalid input: "tag" must be a string');
  }
  const vector = embedding(req.text);
  const metadata = req.tag === undefined ? {} : { tag: req.tag };
  const id = Number(memory.remember(Tier.LONG, req.text, { metadata }));
  try {
    vectors.upsert(COLLECTION, String(id), vector, { ...metadata, text: [...req.text].slice(0, SNIPPET_CHARS).join("") });
  } catch (e) {
    memory.forget(id); // nothing half-written: a note without its vector is never found by likeness
    throw e;
  }
  return { id };
}

// The metadata filter of a tag ({tag}), or none.
function tagFilter(req) {
  if (req.tag === undefined || req.tag === null) return undefined;
  if (typeof req.tag !== "string") throw new InputError('invalid input: "tag" must be a string');
  return { tag: req.tag };
}

export function find(raw) {
  const req = input(raw, ["query", "limit", "tag"], "query");
  const limit = count(req.limit, "limit", 10);
  const filter = tagFilter(req);
  return memory.recall(req.query, filter ? { limit, filter } : { limit }).map((m) => (
    { id: m.id, text: m.text, tag: m.metadata.tag ?? null, score: m.score }));
}

export function similar(raw) {
  const req = input(raw, ["text", "k", "tag"], "text");
  const k = count(req.k, "k", 5);
  let hits;
  try {
    // The filter applies before the k best are taken, so a rare tag still finds k notes.
    hits = vectors.query(COLLECTION, embedding(req.text), k, tagFilter(req) ?? {});
  } catch (e) {
    if (e instanceof OmniHostError && e.code === "NOT_FOUND") return []; // no note was added yet
    throw e;
  }
  return hits.map((h) => ({ id: Number(h.id), text: h.metadata.text ?? "", tag: h.metadata.tag ?? null, score: h.score }));
}

export function forget(raw) {
  const req = json(raw);
  if (req === null || typeof req !== "object" || !Number.isSafeInteger(req.id)) {
    throw new InputError('invalid input: expected {"id": 1}');
  }
  const forgotten = memory.forget(req.id);
  if (forgotten) {
    try {
      vectors.delete(COLLECTION, String(req.id));
    } catch (e) {
      if (e.code !== "NOT_FOUND") throw e;
    }
  }
  return { forgotten };
}

export function embed(raw) {
  return { vector: Array.from(embedding(input(raw, ["text"], "text").text)) };
}
