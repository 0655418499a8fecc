//! omnicore's test host behind `omnicore::testing`: every wrapper against it, as a plugin's
//! own tests (`omnicore test`) use them.

use omnicore::http::Request;
use omnicore::log::Level;
use omnicore::memory::Tier;
use omnicore::{config, events, kv, log, memory, secrets, tasks, testing, vectors, Status};

#[test]
fn log_keeps_levels_from_info_unless_told() {
    log::debug("hidden");
    omnicore::info!("shown {}", 1);
    log::error("bad");
    assert!(!log::enabled(Level::Debug));
    testing::set_log_level(Level::Trace);
    assert!(log::enabled(Level::Trace));
    log::trace("now kept");
    assert_eq!(
        testing::logs(),
        vec![
            (Level::Info, "shown 1".to_string()),
            (Level::Error, "bad".to_string()),
            (Level::Trace, "now kept".to_string())
        ]
    );
}

#[test]
fn config_reads_like_the_host() {
    assert_eq!(config::get("x").unwrap(), None);
    assert_eq!(config::all().unwrap(), "{}");
    let long = "y".repeat(1000); // longer than the SDK's first buffer: exercises the retry
    testing::set_config(&format!(
        r#"{{"greeting": "Hej", "db": {{"port": 5432, "tls": true}}, "long": "{}"}}"#,
        long
    ));
    assert_eq!(config::get("greeting").unwrap().as_deref(), Some("Hej"));
    assert_eq!(config::get("db.port").unwrap().as_deref(), Some("5432"));
    assert_eq!(
        config::get("db").unwrap().as_deref(),
        Some(r#"{"port":5432,"tls":true}"#)
    );
    assert_eq!(config::get("long").unwrap(), Some(long));
    assert_eq!(config::get_or("nope", "dflt"), "dflt");
    assert_eq!(config::get_json::<u16>("db.port").unwrap(), Some(5432));
    assert_eq!(
        config::get_json::<String>("greeting").unwrap().as_deref(),
        Some("Hej")
    );
}

#[test]
fn kv_round_trips_and_reports_statuses() {
    let big = vec![7u8; 5000];
    kv::set("big", &big).unwrap();
    assert_eq!(kv::get("big").unwrap(), Some(big));
    assert_eq!(kv::get("absent").unwrap(), None);
    assert_eq!(kv::incr("n", 5).unwrap(), 5);
    assert_eq!(kv::incr("n", -7).unwrap(), -2);
    kv::set("s", b"text").unwrap();
    assert_eq!(
        kv::incr("s", 1).unwrap_err().status(),
        Some(Status::Invalid)
    );
    assert_eq!(
        kv::set("", b"x").unwrap_err().status(),
        Some(Status::Invalid)
    );
    assert_eq!(kv::list("").unwrap(), vec!["big", "n", "s"]);
    assert!(kv::delete("big").unwrap());
    assert!(!kv::delete("big").unwrap());
    assert_eq!(testing::kv().keys().collect::<Vec<_>>(), vec!["n", "s"]);
}

fn send(_input: &[u8]) -> omnicore::Result<()> {
    Ok(())
}

// The host enqueues only the plugin's own handlers: the test program exports this one.
omnicore::handler!(send => send);

#[test]
fn secrets_events_tasks() {
    testing::set_secret("token", Some(b"s3cr3t"));
    testing::set_secret("unset", None);
    assert_eq!(secrets::get("token").unwrap(), Some(b"s3cr3t".to_vec()));
    assert_eq!(secrets::get("unset").unwrap(), None);
    assert_eq!(
        secrets::get("other").unwrap_err().status(),
        Some(Status::Denied)
    );

    events::publish("order.created", b"{}").unwrap();
    assert_eq!(
        testing::events(),
        vec![("order.created".to_string(), b"{}".to_vec())]
    );

    let id = tasks::enqueue("send", b"p", 10).unwrap();
    assert!(tasks::cancel(id).unwrap());
    assert!(!tasks::cancel(id).unwrap());
    assert_eq!(
        tasks::cancel(999).unwrap_err().status(),
        Some(Status::NotFound)
    );
    let all = testing::tasks();
    assert_eq!(
        (all[0].handler.as_str(), all[0].delay_ms, all[0].cancelled),
        ("send", 10, true)
    );
}

#[test]
fn http_goes_to_the_test_closure() {
    let err = Request::get("https://x.example/").send().unwrap_err();
    assert_eq!(err.status(), Some(Status::Unavailable));
    testing::on_http(|req, body| {
        if req.contains("denied.example") {
            return Err("DENIED: host denied.example is not in the grant".to_string());
        }
        Ok((
            201,
            vec![("x-req".to_string(), req.to_string())],
            [b"echo:", body].concat(),
        ))
    });
    let resp = Request::post("https://api.example/items", "hi")
        .header("a", "b")
        .send()
        .unwrap();
    assert_eq!(resp.status, 201);
    assert_eq!(resp.text().unwrap(), "echo:hi");
    assert_eq!(
        resp.header("X-REQ"),
        Some(r#"{"method":"POST","url":"https://api.example/items","headers":{"a":"b"}}"#)
    );
    let denied = Request::get("https://denied.example/").send().unwrap_err();
    assert_eq!(denied.status(), Some(Status::Denied));
    assert_eq!(
        denied.message(),
        "DENIED: host denied.example is not in the grant"
    );
}

#[test]
fn memory_and_vectors_are_the_hosts() {
    let id = memory::remember(Tier::Working, "the cat sat on the mat").unwrap();
    assert!(id > 0);
    assert!(memory::recall("cat", 5).unwrap().contains("the cat sat"));
    assert!(memory::forget(id).unwrap());
    vectors::upsert("c", "a", &[1.0, 0.0], r#"{"k": 1}"#).unwrap();
    vectors::upsert("c", "b", &[0.0, 1.0], "{}").unwrap();
    let found = vectors::search("c", &[1.0, 0.1], 1).unwrap();
    assert!(found.contains("\"a\""), "{}", found);
    assert_eq!(
        vectors::search("c", &[1.0], 1).unwrap_err().status(),
        Some(Status::Invalid)
    );
}

#[test]
fn handlers_run_through_the_abi_glue() {
    fn shout(input: &[u8]) -> omnicore::Result<String> {
        Ok(String::from_utf8_lossy(input).to_uppercase())
    }
    fn double(input: std::collections::BTreeMap<String, i64>) -> omnicore::Result<i64> {
        input.get("n").map(|n| n * 2).ok_or_else(|| "no n".into())
    }
    assert_eq!(testing::call(shout, b"hi").unwrap(), b"HI");
    assert_eq!(testing::call_json(double, br#"{"n": 21}"#).unwrap(), b"42");
    let err = testing::call_json(double, b"{").unwrap_err();
    assert!(err.message().starts_with("invalid JSON input: "), "{}", err);
    let err = testing::call_json(double, br#"{"n": "x"}"#).unwrap_err();
    assert!(err.message().starts_with("invalid input: "), "{}", err);
    testing::reset();
    assert!(testing::logs().is_empty());
}

#[test]
fn a_route_handlers_error_is_logged_not_sent() {
    // The envelope of `GET /` (specs/http-routes.md §2): head_len, head JSON, no body.
    let head = br#"{"method":"GET","path":"/"}"#;
    let mut input = (head.len() as u32).to_le_bytes().to_vec();
    input.extend_from_slice(head);
    let out = omnicore::route::serve(&input, |_| Err(omnicore::Error::new("db password is hunter2")));
    let n = u32::from_le_bytes([out[0], out[1], out[2], out[3]]) as usize;
    let (answer_head, body) = (std::str::from_utf8(&out[4..4 + n]).unwrap(), &out[4 + n..]);
    assert!(answer_head.contains("\"status\":500"), "{}", answer_head);
    assert_eq!(body, b"internal error");
    assert_eq!(testing::logs(), vec![(Level::Error, "db password is hunter2".to_string())]);
}
