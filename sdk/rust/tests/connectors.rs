//! The SQL and Redis fakes behind `omnicore::testing`, through the public wrappers.

use omnicore::redis::{self, Reply};
use omnicore::sql::{self, Executed, Value};
use omnicore::{testing, Status};

#[test]
fn sql_query_returns_the_canned_rows_with_typed_cells() {
    testing::on_sql(|conn, stmt, params| {
        assert_eq!(conn, "orders");
        assert_eq!(
            stmt,
            "select sku, qty, price, photo, doc from stock where sku = $1"
        );
        assert_eq!(params, &[Value::Text("A-1".into())]);
        Ok(testing::rows(
            &["sku", "qty", "price", "photo", "doc"],
            vec![vec![
                "A-1".into(),
                3.into(),
                Value::Decimal("12.50".into()),
                Value::Bytes(vec![0, 255]),
                Value::Json(r#"{"a":[1,2]}"#.into()),
            ]],
        ))
    });
    let db = sql::connect("orders");
    let rows = db
        .query(
            "select sku, qty, price, photo, doc from stock where sku = $1",
            &["A-1".into()],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = rows.row(0).unwrap();
    assert_eq!(row.get("qty").and_then(Value::as_i64), Some(3));
    assert_eq!(row.get("price").and_then(Value::as_str), Some("12.50"));
    assert_eq!(
        row.get("photo").and_then(Value::as_bytes),
        Some(&[0u8, 255][..])
    );
    assert_eq!(row.get("doc"), Some(&Value::Json(r#"{"a":[1,2]}"#.into())));
    assert_eq!(row.get("nope"), None);
}

#[test]
fn sql_errors_carry_the_status_of_their_prefix() {
    let db = sql::connect("orders");
    let err = db.query("select 1", &[]).unwrap_err();
    assert_eq!(err.status(), Some(Status::Unavailable));
    testing::on_sql(|_, _, _| Err("DENIED: connector orders is not granted".into()));
    let err = db.execute("delete from stock", &[]).unwrap_err();
    assert_eq!(err.status(), Some(Status::Denied));
    assert_eq!(err.message(), "DENIED: connector orders is not granted");
    let err = db
        .query("select $1", &[Value::Json("{nope".into())])
        .unwrap_err();
    assert_eq!(err.status(), Some(Status::Invalid));
    let err = db.query("select $1", &[f64::NAN.into()]).unwrap_err();
    assert_eq!(err.status(), Some(Status::Invalid));
}

#[test]
fn a_transaction_commits_or_rolls_back_when_dropped() {
    testing::on_sql(|_, _, _| {
        Ok(Executed {
            rows_affected: 1,
            last_insert_id: Some(7),
        }
        .into())
    });
    let db = sql::connect("orders");
    {
        let tx = db.transaction().unwrap();
        let done = tx
            .execute("insert into t values ($1)", &[None::<i64>.into()])
            .unwrap();
        assert_eq!(done.last_insert_id, Some(7));
        tx.commit().unwrap();
    }
    {
        let tx = db.transaction().unwrap();
        tx.execute("insert into t values ($1)", &[true.into()])
            .unwrap();
        // dropped: rolled back
    }
    let seen: Vec<(String, Option<i64>)> = testing::sql_statements()
        .into_iter()
        .map(|s| (s.sql, s.tx))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("BEGIN".to_string(), Some(1)),
            ("insert into t values ($1)".to_string(), Some(1)),
            ("COMMIT".to_string(), Some(1)),
            ("BEGIN".to_string(), Some(2)),
            ("insert into t values ($1)".to_string(), Some(2)),
            ("ROLLBACK".to_string(), Some(2)),
        ]
    );
    assert_eq!(testing::sql_statements()[1].params, vec![Value::Null]);
}

#[test]
fn redis_fake_keeps_keys_under_the_prefix() {
    let cache = redis::connect("cache");
    assert_eq!(cache.get("hits").unwrap(), None);
    assert_eq!(cache.incr("hits").unwrap(), 1);
    assert_eq!(cache.incr_by("hits", 4).unwrap(), 5);
    assert!(cache.expire("hits", 60).unwrap());
    assert_eq!(cache.ttl("hits").unwrap(), 60);
    assert_eq!(testing::redis_ttl("hits"), Some(60));
    cache.set_ex("greeting", "hi", 300).unwrap();
    assert_eq!(cache.get_text("greeting").unwrap(), Some("hi".to_string()));
    cache.set("blob", &[0u8, 159, 146, 150][..]).unwrap();
    assert_eq!(cache.get("blob").unwrap(), Some(vec![0, 159, 146, 150]));
    assert!(cache.hset("h", "a", "1").unwrap());
    assert_eq!(cache.hget("h", "a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(
        cache.hgetall("h").unwrap(),
        vec![("a".to_string(), b"1".to_vec())]
    );
    assert_eq!(cache.rpush("q", ["a", "b"]).unwrap(), 2);
    assert_eq!(cache.lpush("q", ["z"]).unwrap(), 3);
    assert_eq!(
        cache.lrange("q", 0, -1).unwrap(),
        vec![b"z".to_vec(), b"a".to_vec(), b"b".to_vec()]
    );
    assert_eq!(cache.sadd("s", ["x", "y", "x"]).unwrap(), 2);
    assert_eq!(cache.srem("s", ["y"]).unwrap(), 1);
    assert_eq!(cache.smembers("s").unwrap(), vec![b"x".to_vec()]);
    assert!(cache.del("greeting").unwrap());
    cache.publish("news", "hello").unwrap();
    assert_eq!(
        testing::redis_keys(),
        vec![
            "omnicore:plugin:blob",
            "omnicore:plugin:h",
            "omnicore:plugin:hits",
            "omnicore:plugin:q",
            "omnicore:plugin:s"
        ]
    );
    assert_eq!(
        testing::redis_published(),
        vec![("omnicore:plugin:news".to_string(), b"hello".to_vec())]
    );
    assert_eq!(
        cache
            .command("HINCRBY", &["h".into(), "a".into(), 2.into()])
            .unwrap(),
        Reply::Int(3)
    );
}

#[test]
fn redis_fake_refuses_like_the_host() {
    let cache = redis::connect("cache");
    let err = cache.command("FLUSHALL", &[]).unwrap_err();
    assert_eq!(err.status(), Some(Status::Denied));
    cache.set("text", "abc").unwrap();
    let err = cache.incr("text").unwrap_err();
    assert_eq!(err.status(), Some(Status::Invalid));
    cache.rpush("list", ["a"]).unwrap();
    let err = cache.get("list").unwrap_err();
    assert_eq!(err.status(), Some(Status::Invalid));
    assert!(err.message().contains("WRONGTYPE"));
}
