//! `omnicore:sql`: PostgreSQL and MySQL/MariaDB through a connector the operator declared and
//! granted (grant `sql: {connectors: [orders]}`; specs/abi.md §4.10). The host holds the URL
//! and the password; the plugin names the connector and never sees either.
//!
//! ```no_run
//! use omnicore::sql::{self, Value};
//! let db = sql::connect("orders");
//! let rows = db.query("select sku, qty from stock where sku = $1", &["A-1".into()])?;
//! for row in rows.iter() {
//!     let qty = row.get("qty").and_then(Value::as_i64);
//! }
//! let tx = db.transaction()?;            // rolled back if dropped without commit()
//! tx.execute("update stock set qty = qty - $1 where sku = $2", &[1.into(), "A-1".into()])?;
//! tx.commit()?;
//! # Ok::<(), omnicore::Error>(())
//! ```
//!
//! **Statements are constants.** `query`, `execute` and their transaction twins take the
//! statement as `&'static str`: a string literal (or a `const`), never text built at run time
//! with `format!`. Every value goes in `params` (PostgreSQL `$1, $2, …`; MySQL/MariaDB `?`), so
//! text from a caller can never become SQL. The SDK has no API that builds a statement from a
//! value, on purpose.
//!
//! Failures are [`Error`]s whose [`status`](Error::status) is the host's: `Denied` (connector
//! not granted, authentication failed), `Unavailable` (server down, statement timed out),
//! `Invalid` (a bad statement or parameter: the database's own message), `TooLarge` (over the
//! connector's `max_rows`/`max_result_bytes`), `Quota` (too many transactions in one call).

use crate::b64;
use crate::error::{Error, Result, Status};
use crate::host::{check, take_block};
use crate::jsonlite::{self, push_str, Value as Json};

#[cfg(target_arch = "wasm32")]
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "omnicore:sql")]
extern "C" {
    #[link_name = "query"]
    pub(crate) fn host_query(
        conn: *const u8,
        conn_len: usize,
        req: *const u8,
        req_len: usize,
    ) -> i64;
    #[link_name = "execute"]
    fn host_execute(conn: *const u8, conn_len: usize, req: *const u8, req_len: usize) -> i64;
    #[link_name = "begin"]
    fn host_begin(conn: *const u8, conn_len: usize) -> i64;
    #[link_name = "commit"]
    fn host_commit(tx: i64) -> i32;
    #[link_name = "rollback"]
    fn host_rollback(tx: i64) -> i32;
}

#[cfg(not(target_arch = "wasm32"))]
use crate::native::sql::*;

/// A parameter or a cell (§4.10's typed JSON values).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer (bigint).
    Int(i64),
    /// A double.
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes (`bytea`, `blob`).
    Bytes(Vec<u8>),
    /// A JSON document, as JSON text (`json`, `jsonb`).
    Json(String),
    /// An RFC 3339 timestamp; without an offset it is a timestamp without time zone.
    Timestamp(String),
    /// A date, `2026-11-24`.
    Date(String),
    /// A time of day, `12:00:00`.
    Time(String),
    /// A decimal, as text so no digit is lost (`12.50`).
    Decimal(String),
}

impl Value {
    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The number as a float (integers too).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(x) => Some(*x),
            Value::Int(n) => Some(*n as f64),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The text of a text, JSON, timestamp, date, time or decimal value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s)
            | Value::Json(s)
            | Value::Timestamp(s)
            | Value::Date(s)
            | Value::Time(s)
            | Value::Decimal(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes of a bytes value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub(crate) fn write(&self, out: &mut String) -> Result<()> {
        let tagged = |out: &mut String, tag: &str, text: &str| {
            out.push_str("{\"");
            out.push_str(tag);
            out.push_str("\":");
            push_str(out, text);
            out.push('}');
        };
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(n) => out.push_str(&n.to_string()),
            Value::Float(x) if x.is_finite() => out.push_str(&format!("{:?}", x)),
            Value::Float(x) => {
                return Err(Error::from_status(
                    Status::Invalid,
                    &format!("sql: {} is not a number JSON can carry", x),
                ))
            }
            Value::Text(s) => push_str(out, s),
            Value::Bytes(b) => tagged(out, "$bytes", &b64::encode(b)),
            Value::Json(text) => {
                // Checked here so a typo fails with the SDK's message, not as a bad request.
                jsonlite::parse(text.as_bytes()).map_err(|e| {
                    Error::from_status(Status::Invalid, &format!("sql: Value::Json: {}", e))
                })?;
                out.push_str("{\"$json\":");
                out.push_str(text);
                out.push('}');
            }
            Value::Timestamp(s) => tagged(out, "$timestamp", s),
            Value::Date(s) => tagged(out, "$date", s),
            Value::Time(s) => tagged(out, "$time", s),
            Value::Decimal(s) => tagged(out, "$decimal", s),
        }
        Ok(())
    }

    pub(crate) fn read(json: &Json) -> core::result::Result<Value, String> {
        Ok(match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => match n.parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Float(n.parse::<f64>().map_err(|_| format!("bad number {}", n))?),
            },
            Json::Str(s) => Value::Text(s.clone()),
            Json::Object(items) if items.len() == 1 => {
                let (tag, inner) = &items[0];
                let text = || match inner {
                    Json::Str(s) => Ok(s.clone()),
                    _ => Err(format!("{} must hold a string", tag)),
                };
                match tag.as_str() {
                    "$bytes" => Value::Bytes(b64::decode(&text()?)?),
                    "$json" => {
                        let mut t = String::new();
                        jsonlite::write(inner, &mut t);
                        Value::Json(t)
                    }
                    "$timestamp" => Value::Timestamp(text()?),
                    "$date" => Value::Date(text()?),
                    "$time" => Value::Time(text()?),
                    "$decimal" => Value::Decimal(text()?),
                    other => return Err(format!("unknown tag {}", other)),
                }
            }
            other => return Err(format!("{:?} is not a SQL value", other)),
        })
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Value {
        Value::Int(n as i64)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Int(n as i64)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Float(x)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Value {
        Value::Bytes(b.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        Value::Bytes(b)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// A result column: its name and the database's type name in lower case (`int4`, `text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// The database's type name (`int4`, `numeric`, `varchar`, ...).
    pub type_name: String,
}

/// The rows a query returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    /// The columns, in order.
    pub columns: Vec<Column>,
    /// Each row's cells, in column order.
    pub rows: Vec<Vec<Value>>,
}

/// One row of [`Rows`], its cells looked up by column name.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [Column],
    values: &'a [Value],
}

impl<'a> Row<'a> {
    /// The cell of column `name`, `None` if the result has no such column.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        let i = self.columns.iter().position(|c| c.name == name)?;
        self.values.get(i)
    }

    /// The cells in column order.
    pub fn values(&self) -> &'a [Value] {
        self.values
    }
}

impl Rows {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no row came back.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i`, if there is one.
    pub fn row(&self, i: usize) -> Option<Row<'_>> {
        self.rows.get(i).map(|values| Row {
            columns: &self.columns,
            values,
        })
    }

    /// The rows in order.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        let columns = &self.columns;
        self.rows.iter().map(move |values| Row { columns, values })
    }

    // A test's answer (omnicore::testing::on_sql) goes to the host as a server's would.
    #[cfg(any(target_os = "wasi", not(target_arch = "wasm32")))]
    pub(crate) fn to_json(&self) -> Result<String> {
        let mut j = String::from("{\"columns\":[");
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            j.push_str("{\"name\":");
            push_str(&mut j, &c.name);
            j.push_str(",\"type\":");
            push_str(&mut j, &c.type_name);
            j.push('}');
        }
        j.push_str("],\"rows\":[");
        for (i, row) in self.rows.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            write_values(&mut j, row)?;
        }
        j.push_str("]}");
        Ok(j)
    }
}

/// What a statement changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Executed {
    /// Rows inserted, updated or deleted.
    pub rows_affected: u64,
    /// The id the statement generated (MySQL/MariaDB `AUTO_INCREMENT`), when there is one.
    pub last_insert_id: Option<i64>,
}

impl Executed {
    // A test's answer (omnicore::testing::on_sql) goes to the host as a server's would.
    #[cfg(any(target_os = "wasi", not(target_arch = "wasm32")))]
    pub(crate) fn to_json(self) -> String {
        match self.last_insert_id {
            Some(id) => format!(
                "{{\"rows_affected\":{},\"last_insert_id\":{}}}",
                self.rows_affected, id
            ),
            None => format!("{{\"rows_affected\":{}}}", self.rows_affected),
        }
    }
}

fn write_values(out: &mut String, values: &[Value]) -> Result<()> {
    out.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        v.write(out)?;
    }
    out.push(']');
    Ok(())
}

fn request(sql: &str, params: &[Value], tx: Option<i64>) -> Result<String> {
    let mut j = String::from("{\"sql\":");
    push_str(&mut j, sql);
    j.push_str(",\"params\":");
    write_values(&mut j, params)?;
    if let Some(tx) = tx {
        j.push_str(&format!(",\"tx\":{}", tx));
    }
    j.push('}');
    Ok(j)
}

fn malformed(what: &str, why: &str) -> Error {
    Error::new(format!(
        "sql.{}: the host returned a malformed result: {}",
        what, why
    ))
}

pub(crate) fn parse_rows(bytes: &[u8]) -> Result<Rows> {
    let doc = jsonlite::parse(bytes).map_err(|e| malformed("query", &e))?;
    let mut rows = Rows::default();
    if let Some(Json::Array(cols)) = doc.get("columns") {
        for c in cols {
            let text = |k: &str| match c.get(k) {
                Some(Json::Str(s)) => s.clone(),
                _ => String::new(),
            };
            rows.columns.push(Column {
                name: text("name"),
                type_name: text("type"),
            });
        }
    }
    match doc.get("rows") {
        Some(Json::Array(items)) => {
            for item in items {
                match item {
                    Json::Array(cells) => rows.rows.push(
                        cells
                            .iter()
                            .map(Value::read)
                            .collect::<core::result::Result<_, _>>()
                            .map_err(|e| malformed("query", &e))?,
                    ),
                    _ => return Err(malformed("query", "a row is not an array")),
                }
            }
        }
        _ => return Err(malformed("query", "no rows")),
    }
    Ok(rows)
}

pub(crate) fn parse_executed(bytes: &[u8]) -> Result<Executed> {
    let doc = jsonlite::parse(bytes).map_err(|e| malformed("execute", &e))?;
    let number = |k: &str| match doc.get(k) {
        Some(Json::Number(n)) => n.parse::<i64>().ok(),
        _ => None,
    };
    Ok(Executed {
        rows_affected: number("rows_affected")
            .ok_or_else(|| malformed("execute", "no rows_affected"))? as u64,
        last_insert_id: number("last_insert_id"),
    })
}

fn run_query(conn: &str, sql: &str, params: &[Value], tx: Option<i64>) -> Result<Rows> {
    let req = request(sql, params, tx)?;
    #[cfg(any(target_os = "wasi", not(target_arch = "wasm32")))]
    crate::testing::answer_sql(conn, sql, params, true);
    // SAFETY: the host reads both ranges and returns a block it allocated with omni_alloc.
    let packed = unsafe { host_query(conn.as_ptr(), conn.len(), req.as_ptr(), req.len()) };
    parse_rows(&take_block(packed as u64)?)
}

fn run_execute(conn: &str, sql: &str, params: &[Value], tx: Option<i64>) -> Result<Executed> {
    let req = request(sql, params, tx)?;
    #[cfg(any(target_os = "wasi", not(target_arch = "wasm32")))]
    crate::testing::answer_sql(conn, sql, params, false);
    // SAFETY: as in run_query.
    let packed = unsafe { host_execute(conn.as_ptr(), conn.len(), req.as_ptr(), req.len()) };
    parse_executed(&take_block(packed as u64)?)
}

/// A handle on connector `name` (nothing is checked until the first statement).
pub fn connect(name: &str) -> Connection {
    Connection {
        name: name.to_string(),
    }
}

/// A SQL connector the operator granted, by name. Cheap: the host holds the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    name: String,
}

impl Connection {
    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a statement that returns rows. `sql` is a constant; values go in `params`.
    pub fn query(&self, sql: &'static str, params: &[Value]) -> Result<Rows> {
        run_query(&self.name, sql, params, None)
    }

    /// Runs a statement that changes rows (its own transaction, committed).
    pub fn execute(&self, sql: &'static str, params: &[Value]) -> Result<Executed> {
        run_execute(&self.name, sql, params, None)
    }

    /// Opens a transaction; it lives until [`Transaction::commit`], [`Transaction::rollback`]
    /// or its drop (which rolls it back), and never past the plugin call.
    pub fn transaction(&self) -> Result<Transaction<'_>> {
        // SAFETY: the host only reads the name.
        let code = unsafe { host_begin(self.name.as_ptr(), self.name.len()) };
        let id = check(code, || format!("sql.begin({:?})", self.name))?;
        Ok(Transaction {
            conn: self,
            id,
            open: true,
        })
    }
}

/// An open transaction: a guard that rolls back when dropped without [`commit`](Self::commit).
#[derive(Debug)]
pub struct Transaction<'c> {
    conn: &'c Connection,
    id: i64,
    open: bool,
}

impl<'c> Transaction<'c> {
    /// [`Connection::query`] inside this transaction.
    pub fn query(&self, sql: &'static str, params: &[Value]) -> Result<Rows> {
        run_query(&self.conn.name, sql, params, Some(self.id))
    }

    /// [`Connection::execute`] inside this transaction.
    pub fn execute(&self, sql: &'static str, params: &[Value]) -> Result<Executed> {
        run_execute(&self.conn.name, sql, params, Some(self.id))
    }

    /// Commits. An error means nothing was committed (the transaction is gone either way).
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        // SAFETY: a plain host call on an integer handle.
        let code = unsafe { host_commit(self.id) };
        check(code as i64, || format!("sql.commit({:?})", self.conn.name)).map(|_| ())
    }

    /// Rolls back.
    pub fn rollback(mut self) -> Result<()> {
        self.open = false;
        // SAFETY: a plain host call on an integer handle.
        let code = unsafe { host_rollback(self.id) };
        check(code as i64, || {
            format!("sql.rollback({:?})", self.conn.name)
        })
        .map(|_| ())
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // The host would roll it back at the end of the call anyway; doing it now frees
            // the connection for the rest of this call. Nothing to report to: ignore a failure.
            // SAFETY: a plain host call on an integer handle.
            let _ = unsafe { host_rollback(self.id) };
        }
    }
}
