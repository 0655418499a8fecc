//! The test host through the host's answers (sdk/contract/host.json): the requests
//! tests/sdk/test_contract_fakes.py passes in `OMNICORE_CONTRACT_LINES` go through the SDK's
//! own host calls to omnicore's test host, each outcome printed as `CONTRACT ok <JSON>` or
//! `CONTRACT error <text>` for it to compare.

use crate::jsonlite::{self, Value};
use crate::testing::{self, SqlAnswer};
use std::cell::RefCell;
use std::rc::Rc;

fn report(packed: i64) {
    let packed = packed as u64;
    let failed = packed & (1 << 31) != 0;
    let data = String::from_utf8_lossy(&crate::host::block_bytes(packed)).into_owned();
    println!("CONTRACT {} {}", if failed { "error" } else { "ok" }, data);
}

#[test]
fn contract() {
    let text = match std::env::var("OMNICORE_CONTRACT_LINES") {
        Ok(text) => text,
        Err(_) => return, // set by tests/sdk/test_contract_fakes.py
    };
    let answer: Rc<RefCell<Option<crate::sql::Rows>>> = Rc::new(RefCell::new(None));
    let fresh = |answer: &Rc<RefCell<Option<crate::sql::Rows>>>| {
        testing::reset();
        let given = Rc::clone(answer);
        testing::on_sql(move |_, _, _| Ok(SqlAnswer::Rows(given.borrow().clone().unwrap())));
    };
    fresh(&answer);
    for line in text.lines().filter(|l| !l.is_empty()) {
        let req = jsonlite::parse(line.as_bytes()).unwrap();
        if req.get("reset").is_some() {
            fresh(&answer);
            continue;
        }
        let (key, value) = match &req {
            Value::Object(items) => items[0].clone(),
            _ => panic!("a request is an object"),
        };
        let mut raw = String::new();
        jsonlite::write(&value, &mut raw);
        if key == "sql" {
            // The test host takes Rows: an answer the SDK cannot read as Rows cannot be given.
            match crate::sql::parse_rows(raw.as_bytes()) {
                Ok(rows) if typed(&value) => *answer.borrow_mut() = Some(rows),
                _ => {
                    println!("CONTRACT typed");
                    continue;
                }
            }
            let body = "{\"sql\":\"SELECT\"}";
            testing::answer_sql("db", "SELECT", &[], true);
            // SAFETY: the host reads both ranges and answers a block (§3.3).
            report(unsafe { crate::sql::host_query(b"db".as_ptr(), 2, body.as_ptr(), body.len()) });
        } else {
            // SAFETY: as above.
            report(unsafe {
                crate::redis::host_command(b"cache".as_ptr(), 5, raw.as_ptr(), raw.len())
            });
        }
    }
}

/// Whether every column of the answer is an object with a name and a type.
fn typed(answer: &Value) -> bool {
    match answer.get("columns") {
        Some(Value::Array(columns)) => columns.iter().all(|c| {
            let text = |key| matches!(c.get(key), Some(Value::Str(_)));
            text("name") && text("type")
        }),
        _ => false,
    }
}
