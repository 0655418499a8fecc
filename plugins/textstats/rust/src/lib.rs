//! textstats: text statistics on the `regex` crate.
//!
//! * `analyze`: `{"text": str, "top": int?}` -> counts of characters, words, unique words and
//!   sentences, the most frequent words, and the emails and URLs found.
//! * `redact`: `{"text": str}` -> `{"text": ..., "emails": n, "urls": n}` with every email
//!   replaced by `[email]` and every URL by `[url]`.

use std::collections::HashMap;

use omnicore::{json_handler, Error};
use regex::Regex;
use serde::{Deserialize, Serialize};

const MAX_TOP: usize = 100;

struct Patterns {
    word: Regex,
    sentence_end: Regex,
    email: Regex,
    url: Regex,
}

impl Patterns {
    fn new() -> Patterns {
        Patterns {
            word: Regex::new(r"[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*").unwrap(),
            sentence_end: Regex::new(r"[.!?…]+(?:\s|$)").unwrap(),
            email: Regex::new(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b")
                .unwrap(),
            url: Regex::new(r#"\bhttps?://[^\s<>"'()\[\]{}]+"#).unwrap(),
        }
    }
}

thread_local! {
    // Compiled once per instance (on first use): compiling is far slower than matching.
    static PATTERNS: Patterns = Patterns::new();
}

omnicore::json_schema! {
    #[derive(Deserialize)]
    struct AnalyzeIn {
        text: String,
        top: Option<usize>,
    }
}

omnicore::json_schema! {
    #[derive(Serialize, Debug, PartialEq)]
    struct WordCount {
        word: String,
        count: usize,
    }
}

omnicore::json_schema! {
    #[derive(Serialize)]
    struct AnalyzeOut {
        characters: usize,
        words: usize,
        unique_words: usize,
        sentences: usize,
        top_words: Vec<WordCount>,
        emails: Vec<String>,
        urls: Vec<String>,
    }
}

fn config_usize(key: &str, default: usize) -> Result<usize, Error> {
    match omnicore::config::get(key)? {
        None => Ok(default),
        Some(text) => text.parse::<usize>().map_err(|_| {
            Error::new(format!(
                "config '{}' must be a non-negative integer, got {}",
                key, text
            ))
        }),
    }
}

/// A URL ends before trailing punctuation that belongs to the sentence around it.
fn trim_url(url: &str) -> &str {
    url.trim_end_matches(&['.', ',', ';', ':', '!', '?'][..])
}

/// Replaces each URL by `with`, keeping the sentence's trailing punctuation after it.
fn replace_urls(url: &Regex, text: &str, with: &str) -> String {
    url.replace_all(text, |caps: &regex::Captures<'_>| {
        let whole = &caps[0];
        format!("{}{}", with, &whole[trim_url(whole).len()..])
    })
    .into_owned()
}

fn unique_in_order<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = Vec::<String>::new();
    for item in items {
        if !seen.iter().any(|s| s == item) {
            seen.push(item.to_string());
        }
    }
    seen
}

fn top_words(counts: HashMap<String, usize>, n: usize, min_len: usize) -> Vec<WordCount> {
    let mut all: Vec<WordCount> = counts
        .into_iter()
        .filter(|(w, _)| w.chars().count() >= min_len)
        .map(|(word, count)| WordCount { word, count })
        .collect();
    // Most frequent first; ties alphabetical so the output is deterministic.
    all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.word.cmp(&b.word)));
    all.truncate(n);
    all
}

fn analyze(input: AnalyzeIn) -> Result<AnalyzeOut, Error> {
    let top = match input.top {
        Some(n) => n,
        None => config_usize("top", 10)?,
    };
    if top > MAX_TOP {
        return Err(Error::new(format!(
            "top must be at most {}, got {}",
            MAX_TOP, top
        )));
    }
    let min_len = config_usize("min_word_length", 1)?.max(1);
    PATTERNS.with(|p| analyze_with(p, &input.text, top, min_len))
}

fn analyze_with(p: &Patterns, text: &str, top: usize, min_len: usize) -> Result<AnalyzeOut, Error> {
    // Emails and URLs are found first and masked, so their parts do not count as words.
    let emails = unique_in_order(p.email.find_iter(text).map(|m| m.as_str()));
    let urls = unique_in_order(p.url.find_iter(text).map(|m| trim_url(m.as_str())));
    let no_emails = p.email.replace_all(text, " ");
    let masked = replace_urls(&p.url, &no_emails, " ");

    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut words = 0;
    for m in p.word.find_iter(&masked) {
        words += 1;
        *counts.entry(m.as_str().to_lowercase()).or_insert(0) += 1;
    }
    let sentences = p
        .sentence_end
        .split(&masked)
        .filter(|s| p.word.is_match(s))
        .count();
    omnicore::log::debug(&format!(
        "analyzed {} words in {} sentences",
        words, sentences
    ));
    Ok(AnalyzeOut {
        characters: text.chars().count(),
        words,
        unique_words: counts.len(),
        sentences,
        top_words: top_words(counts, top, min_len),
        emails,
        urls,
    })
}

omnicore::json_schema! {
    #[derive(Deserialize)]
    struct RedactIn {
        text: String,
    }
}

omnicore::json_schema! {
    #[derive(Serialize)]
    struct RedactOut {
        text: String,
        emails: usize,
        urls: usize,
    }
}

fn redact(input: RedactIn) -> Result<RedactOut, Error> {
    PATTERNS.with(|p| redact_with(p, input))
}

fn redact_with(p: &Patterns, input: RedactIn) -> Result<RedactOut, Error> {
    let emails = p.email.find_iter(&input.text).count();
    let no_emails = p.email.replace_all(&input.text, "[email]");
    let urls = p.url.find_iter(&no_emails).count();
    let text = replace_urls(&p.url, &no_emails, "[url]");
    if emails + urls > 0 {
        omnicore::log::info(&format!("redacted {} emails and {} urls", emails, urls));
    }
    Ok(RedactOut { text, emails, urls })
}

json_handler! {
    /// Counts the characters, words, unique words and sentences of a text, and lists its most frequent words, emails and URLs.
    analyze => analyze,
    /// Replaces every email of a text by [email] and every URL by [url], and says how many of each.
    redact => redact,
}

// `omnicore test` runs these on omnicore's test host (the host's own capability code);
// omnicore::testing sets it up and reads what the handler did.
#[cfg(test)]
mod tests {
    use super::*;
    use omnicore::testing;

    fn analyze_text(text: &str) -> serde_json::Value {
        let input = serde_json::json!({ "text": text, "top": 2 }).to_string();
        serde_json::from_slice(&testing::call_json(analyze, input.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn counts_words_sentences_and_finds_contacts() {
        let out = analyze_text("The cat sat. The cat ran! Write to a@b.io or see http://x.org/p.");
        assert_eq!(out["sentences"], 3);
        assert_eq!(out["words"], 10);
        assert_eq!(
            out["top_words"][0],
            serde_json::json!({"word": "cat", "count": 2})
        );
        assert_eq!(out["emails"], serde_json::json!(["a@b.io"]));
        assert_eq!(out["urls"], serde_json::json!(["http://x.org/p"]));
    }

    #[test]
    fn config_top_and_min_word_length() {
        testing::set_config(r#"{"top": 1, "min_word_length": 4}"#);
        let out: serde_json::Value = serde_json::from_slice(
            &testing::call_json(analyze, br#"{"text": "a a a word word"}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(
            out["top_words"],
            serde_json::json!([{"word": "word", "count": 2}])
        );
    }

    #[test]
    fn redacts_keeping_punctuation() {
        let out = testing::call_json(redact, br#"{"text": "Mail a@b.io, see https://x.org."}"#);
        let out: serde_json::Value = serde_json::from_slice(&out.unwrap()).unwrap();
        assert_eq!(out["text"], "Mail [email], see [url].");
    }
}
