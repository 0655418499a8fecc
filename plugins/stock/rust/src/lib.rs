//! The stock example: reads and updates the `stock` table (plugins/stock/schema.sql) of the
//! PostgreSQL database behind the operator's `orders` connector (`omnicore::sql`). The
//! plugin never sees the database's address or password: the host holds both and answers
//! `UNAVAILABLE` when the server is down, `DENIED` when `orders` is not granted.
//!
//! Statements are string constants; the SKU and quantities travel as parameters, so no
//! input can change what the SQL does.

use omnicore::sql::{self, Row, Value};
use omnicore::{json_handler, Error};
use serde::{Deserialize, Serialize};

const CONNECTOR: &str = "orders";

const SELECT: &str = "select sku, name, qty, price from stock where sku = $1";
const TAKE: &str = "update stock set qty = qty - $2, updated_at = now() where sku = $1 and qty >= $2";

omnicore::json_schema! {
    #[derive(Deserialize)]
    struct CheckIn {
        /// The stock-keeping unit, e.g. "A-1".
        sku: String,
    }
}

omnicore::json_schema! {
    #[derive(Deserialize)]
    struct ReserveIn {
        /// The stock-keeping unit.
        sku: String,
        /// How many to take (at least 1).
        qty: i64,
    }
}

omnicore::json_schema! {
    #[derive(Serialize, Debug, PartialEq)]
    struct Item {
        sku: String,
        name: String,
        /// Units in stock.
        qty: i64,
        /// The unit price, a decimal as text ("2.50").
        price: String,
        in_stock: bool,
    }
}

omnicore::json_schema! {
    #[derive(Serialize, Debug, PartialEq)]
    struct Reserved {
        /// Whether the units were taken (false: not enough in stock, nothing changed).
        reserved: bool,
        item: Item,
    }
}

fn text(row: &Row, column: &str) -> Result<String, Error> {
    match row.get(column) {
        Some(v) => v
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::new(format!("stock.{} is not text: {:?}", column, v))),
        None => Err(Error::new(format!("the result has no column {}", column))),
    }
}

fn item(rows: &sql::Rows, sku: &str) -> Result<Item, Error> {
    let row = rows
        .row(0)
        .ok_or_else(|| Error::new(format!("no such sku: {}", sku)))?;
    let qty = row
        .get("qty")
        .and_then(Value::as_i64)
        .ok_or_else(|| Error::new("stock.qty is not an integer"))?;
    Ok(Item {
        sku: text(&row, "sku")?,
        name: text(&row, "name")?,
        qty,
        price: text(&row, "price")?,
        in_stock: qty > 0,
    })
}

fn check(input: CheckIn) -> Result<Item, Error> {
    let rows = sql::connect(CONNECTOR).query(SELECT, &[input.sku.as_str().into()])?;
    item(&rows, &input.sku)
}

fn reserve(input: ReserveIn) -> Result<Reserved, Error> {
    if input.qty < 1 {
        return Err(Error::new("qty must be at least 1"));
    }
    let db = sql::connect(CONNECTOR);
    // One transaction: the update and the read see the same row; dropping `tx` on an error
    // (the `?`s) rolls it back.
    let tx = db.transaction()?;
    let taken = tx.execute(TAKE, &[input.sku.as_str().into(), input.qty.into()])?;
    let item = item(&tx.query(SELECT, &[input.sku.as_str().into()])?, &input.sku)?;
    tx.commit()?;
    omnicore::info!("reserve {} x{}: {}", input.sku, input.qty, taken.rows_affected == 1);
    Ok(Reserved {
        reserved: taken.rows_affected == 1,
        item,
    })
}

json_handler! {
    /// The stock row of one SKU: name, units in stock, unit price.
    check => check,
    /// Takes `qty` units of a SKU if that many are in stock, in one transaction; says whether
    /// it did and returns the row after.
    reserve => reserve,
}

// `omnicore test` runs these on omnicore's test host, its sql capability answering canned rows;
// tests/test_stock.py runs the built plugin against a real PostgreSQL.
#[cfg(test)]
mod tests {
    use super::*;
    use omnicore::sql::Executed;
    use omnicore::testing;

    fn widget(_: &str, stmt: &str, params: &[Value]) -> Result<testing::SqlAnswer, String> {
        if stmt == TAKE {
            return Ok(Executed { rows_affected: 1, last_insert_id: None }.into());
        }
        assert_eq!(params, &[Value::Text("A-1".into())]);
        Ok(testing::rows(
            &["sku", "name", "qty", "price"],
            vec![vec!["A-1".into(), "Widget".into(), 12.into(), Value::Decimal("2.50".into())]],
        ))
    }

    #[test]
    fn check_returns_the_row() {
        testing::on_sql(widget);
        let out = testing::call_json(check, br#"{"sku": "A-1"}"#).unwrap();
        assert_eq!(
            out,
            br#"{"sku":"A-1","name":"Widget","qty":12,"price":"2.50","in_stock":true}"#
        );
        testing::on_sql(|_, _, _| Ok(testing::rows(&["sku"], vec![])));
        let err = testing::call_json(check, br#"{"sku": "nope"}"#).unwrap_err();
        assert_eq!(err.message(), "no such sku: nope");
    }

    #[test]
    fn reserve_commits_one_transaction() {
        testing::on_sql(widget);
        testing::call_json(reserve, br#"{"sku": "A-1", "qty": 2}"#).unwrap();
        let seen: Vec<String> = testing::sql_statements().into_iter().map(|s| s.sql).collect();
        assert_eq!(seen, vec!["BEGIN", TAKE, SELECT, "COMMIT"]);
    }

    #[test]
    fn an_unavailable_database_is_the_callers_error() {
        testing::on_sql(|_, _, _| Err("UNAVAILABLE: connector orders: connection refused".into()));
        let err = testing::call_json(check, br#"{"sku": "A-1"}"#).unwrap_err();
        assert_eq!(err.status(), Some(omnicore::Status::Unavailable));
        let err = testing::call_json(reserve, br#"{"sku": "A-1", "qty": 1}"#).unwrap_err();
        assert_eq!(err.status(), Some(omnicore::Status::Unavailable));
        // The failed statement ended the transaction: dropped, so rolled back.
        let seen: Vec<String> = testing::sql_statements().into_iter().map(|s| s.sql).collect();
        assert_eq!(seen.last().map(String::as_str), Some("ROLLBACK"));
    }
}
