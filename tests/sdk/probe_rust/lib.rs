//! Test probe for the Rust SDK: one handler per SDK feature, each reporting what it saw as
//! text the test asserts on. Copied into a scaffolded crate by tests/sdk/test_rust.py.

use omnicore::http::Request;
use omnicore::memory::{Memory, Recall, Tier};
use omnicore::{config, events, handler, json_handler, kv, log, memory, secrets, tasks, vectors};
use omnicore::{Error, Status};

fn show<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Ok(v) => format!("ok({:?})", v),
        Err(e) => format!("err({:?}, {})", e.status(), e),
    }
}

fn text(s: String) -> Result<String, Error> {
    Ok(s)
}

fn echo(input: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(input.to_vec())
}

fn fail(input: &[u8]) -> Result<Vec<u8>, Error> {
    Err(Error::new(String::from_utf8_lossy(input).into_owned()))
}

fn boom(input: &[u8]) -> Result<Vec<u8>, Error> {
    panic!("boom with {}", String::from_utf8_lossy(input));
}

fn big_output(input: &[u8]) -> Result<Vec<u8>, Error> {
    let n: usize = std::str::from_utf8(input)?
        .parse()
        .map_err(|_| "not a number")?;
    Ok(vec![b'x'; n])
}

fn logging(_: &[u8]) -> Result<String, Error> {
    log::trace("t");
    log::debug("d");
    log::info("i");
    log::warn("w");
    log::error("e");
    omnicore::debug!("skipped {}", 1);
    omnicore::info!("formatted {} {:?}", 7, "x");
    text(format!(
        "debug={} info={}",
        log::enabled(log::Level::Debug),
        log::enabled(log::Level::Info)
    ))
}

fn config_probe(input: &[u8]) -> Result<String, Error> {
    let key = std::str::from_utf8(input)?;
    text(format!("{}|{}", show(config::get(key)), config::all()?))
}

fn kv_probe(input: &[u8]) -> Result<String, Error> {
    kv::set("big", input)?;
    let back = kv::get("big")?.ok_or("big vanished")?;
    if back != input {
        return Err("kv round trip changed the value".into());
    }
    kv::set("user:b", b"two")?;
    kv::set("user:a \"q\"", b"1")?;
    text(format!(
        "len={} hits={},{} missing={} keys={:?} deleted={},{} not_int={} too_big={}",
        back.len(),
        kv::incr("hits", 5)?,
        kv::incr("hits", -2)?,
        show(kv::get("absent")),
        kv::list("user:")?,
        kv::delete("big")?,
        kv::delete("big")?,
        show(kv::incr("user:b", 1)),
        show(kv::set("huge", &vec![0u8; 2000])),
    ))
}

fn secrets_probe(_: &[u8]) -> Result<String, Error> {
    let token = secrets::get("token")?.map(|v| String::from_utf8_lossy(&v).into_owned());
    text(format!(
        "token={:?} unset={} hidden={}",
        token,
        show(secrets::get("unset")),
        show(secrets::get("hidden"))
    ))
}

fn http_probe(input: &[u8]) -> Result<String, Error> {
    let base = std::str::from_utf8(input)?;
    let resp = Request::post(&format!("{}/items", base), "payload")
        .header("x-a", "1 \"quoted\"")
        .timeout_ms(5000)
        .send()?;
    let via = Request::connector("local", "GET", "/repos/x").send()?;
    let denied = Request::get("https://denied.example/").send();
    text(format!(
        "status={} method={:?} ctype={:?} body={} via={} {} denied={}",
        resp.status,
        resp.header("x-method"),
        resp.header("content-type"),
        resp.text()?,
        via.status,
        via.text()?,
        show(denied)
    ))
}

fn events_probe(input: &[u8]) -> Result<&'static str, Error> {
    events::publish("order.created", input)?;
    Ok("published")
}

fn nothing(_: &[u8]) -> Result<(), Error> {
    Ok(())
}

fn tasks_probe(_: &[u8]) -> Result<String, Error> {
    let id = tasks::enqueue("echo", b"later", 10)?;
    text(format!(
        "id={} cancel={},{} unknown={} bad_handler={}",
        id,
        show(tasks::cancel(id)),
        show(tasks::cancel(id)),
        show(tasks::cancel(424242)),
        show(tasks::enqueue("nope", b"", 0))
    ))
}

fn memory_probe(_: &[u8]) -> Result<String, Error> {
    let id = memory::remember(Tier::LongTerm, "likes \"green\" tea")?;
    let hits = memory::recall("tea", 3)?;
    text(format!(
        "id={} hits={} forget={},{}",
        id,
        hits,
        show(memory::forget(id)),
        show(memory::forget(id))
    ))
}

fn vectors_probe(_: &[u8]) -> Result<String, Error> {
    vectors::upsert("c", "a", &[1.0, 0.0], r#"{"t":1}"#)?;
    vectors::upsert("c", "b", &[0.0, 1.0], "")?;
    text(format!(
        "mismatch={} search={} missing={} delete={},{} no_coll={}",
        show(vectors::upsert("c", "x", &[1.0], "")),
        vectors::search("c", &[1.0, 0.25], 1)?,
        show(vectors::search("zz", &[1.0, 0.0], 1)),
        show(vectors::delete("c", "a")),
        show(vectors::delete("c", "a")),
        show(vectors::delete("zz", "a")),
    ))
}

/// The memory fields of abi.md §4.4 (metadata, importance, vector, ttl_s; recall's tiers,
/// filter and vector), one `key=value` line each.
fn memory_fields(_: &[u8]) -> Result<String, Error> {
    Memory::new("ada ordered a blue kettle")
        .metadata(r#"{"user":"ada"}"#)
        .importance(0.9)
        .vector(&[1.0, 0.0, 0.0])
        .remember(Tier::ShortTerm)?;
    Memory::new("bob ordered a red kettle")
        .metadata(r#"{"user":"bob"}"#)
        .importance(0.2)
        .vector(&[0.0, 1.0, 0.0])
        .ttl_s(60)
        .remember(Tier::ShortTerm)?;
    let lines = [
        format!(
            "ada={}",
            Recall::new("kettle")
                .filter(r#"{"user":"ada"}"#)
                .tiers(&[Tier::ShortTerm])
                .limit(5)
                .run()?
        ),
        format!(
            "near_bob={}",
            Recall::new("kettle").vector(&[0.1, 0.9, 0.0]).limit(1).run()?
        ),
        format!(
            "long_only={}",
            Recall::new("kettle").tiers(&[Tier::LongTerm]).run()?
        ),
        format!(
            "importance={}",
            show(Memory::new("x").importance(1.5).remember(Tier::Working))
        ),
        format!(
            "nan={}",
            show(Memory::new("x").vector(&[f32::NAN]).remember(Tier::Working))
        ),
        format!(
            "wrong_dim={}",
            show(Memory::new("x").vector(&[1.0, 0.0]).remember(Tier::Working))
        ),
        format!(
            "bad_filter={}",
            show(Recall::new("x").filter(r#"{"user":["a"]}"#).run())
        ),
        format!(
            "bad_metadata={}",
            show(Memory::new("x").metadata("[1]").remember(Tier::Working))
        ),
    ];
    text(lines.join("\n"))
}

/// `vectors::query`: search with a metadata equality filter, one `key=value` line each.
fn vectors_query(_: &[u8]) -> Result<String, Error> {
    vectors::upsert("q", "en1", &[1.0, 0.0], r#"{"lang":"en","n":1}"#)?;
    vectors::upsert("q", "en2", &[0.6, 0.8], r#"{"lang":"en","n":2}"#)?;
    vectors::upsert("q", "de1", &[1.0, 0.1], r#"{"lang":"de","n":1}"#)?;
    let v = [1.0, 0.0];
    let lines = [
        format!("en={}", vectors::query("q", &v, 2, r#"{"lang":"en"}"#)?),
        format!("en_n2={}", vectors::query("q", &v, 5, r#"{"lang":"en","n":2}"#)?),
        format!("fr={}", vectors::query("q", &v, 5, r#"{"lang":"fr"}"#)?),
        format!("unfiltered={}", vectors::query("q", &v, 1, "")?),
        format!("bad_filter={}", show(vectors::query("q", &v, 1, "[1]"))),
        format!("bad_k={}", show(vectors::query("q", &v, 0, ""))),
        format!("missing={}", show(vectors::query("zz", &v, 1, ""))),
    ];
    text(lines.join("\n"))
}

#[derive(serde::Deserialize)]
struct AddIn {
    a: i64,
    b: i64,
}

#[derive(serde::Serialize)]
struct AddOut {
    sum: i64,
}

fn add(input: AddIn) -> Result<AddOut, Error> {
    input
        .a
        .checked_add(input.b)
        .map(|sum| AddOut { sum })
        .ok_or_else(|| Error::from_status(Status::Invalid, "overflow"))
}

handler!(
    echo => echo,
    fail => fail,
    boom => boom,
    big_output => big_output,
    logging => logging,
    config_probe => config_probe,
    kv_probe => kv_probe,
    secrets_probe => secrets_probe,
    http_probe => http_probe,
    events_probe => events_probe,
    nothing => nothing,
    tasks_probe => tasks_probe,
    memory_probe => memory_probe,
    vectors_probe => vectors_probe,
    memory_fields => memory_fields,
    vectors_query => vectors_query,
);
json_handler!(add => add);
