package omnicore

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"
)

// Statement is the text of a SQL statement. It is its own type so that only a constant
// converts to it silently: a string literal or an untyped const compiles, a string built at
// run time (fmt.Sprintf, +) does not without an explicit Statement(...) conversion. Values go
// in the params, never in the text (PostgreSQL `$1, $2, …`; MySQL/MariaDB `?`), so text from
// a caller cannot become SQL. The SDK has no way to build a statement from a value.
type Statement string

// Typed SQL values (specs/abi.md §4.10) for what plain Go values do not say. Parameters may
// also be nil, bool, any integer type, float32/float64, string, []byte (bytes) and
// time.Time (a timestamp with its offset); cells come back as nil, bool, int64, float64,
// string, []byte, JSON, Timestamp, Date, Time or Decimal.
type (
	// JSON is a json/jsonb value: Value is encoded with encoding/json.
	JSON struct{ Value any }
	// Timestamp is RFC 3339 text; without an offset it is a timestamp without time zone.
	Timestamp string
	// Date is "2026-11-24".
	Date string
	// Time is a time of day, "12:00:00".
	Time string
	// Decimal is a decimal as text ("12.50"), so no digit is lost.
	Decimal string
)

// SQLColumn is a result column: its name and the database's type name (int4, text, ...).
type SQLColumn struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Rows is what a query returned.
type Rows struct {
	Columns []SQLColumn
	Rows    [][]any
}

// Len is the number of rows.
func (r *Rows) Len() int { return len(r.Rows) }

// Get is the cell of column name in row i (nil when there is no such row or column).
func (r *Rows) Get(i int, name string) any {
	if i < 0 || i >= len(r.Rows) {
		return nil
	}
	for c, col := range r.Columns {
		if col.Name == name && c < len(r.Rows[i]) {
			return r.Rows[i][c]
		}
	}
	return nil
}

// Maps is every row as a map from column name to cell.
func (r *Rows) Maps() []map[string]any {
	out := make([]map[string]any, len(r.Rows))
	for i, row := range r.Rows {
		m := make(map[string]any, len(row))
		for c, cell := range row {
			if c < len(r.Columns) {
				m[r.Columns[c].Name] = cell
			}
		}
		out[i] = m
	}
	return out
}

// ExecResult is what a statement changed.
type ExecResult struct {
	RowsAffected int64 `json:"rows_affected"`
	// LastInsertID is the generated id (MySQL/MariaDB AUTO_INCREMENT), nil when none.
	LastInsertID *int64 `json:"last_insert_id,omitempty"`
}

// SQLNamespace is the omnicore:sql capability. Use it through the [SQL] value.
type SQLNamespace struct{}

// SQL reaches PostgreSQL and MySQL/MariaDB through the connectors the operator granted
// (grant `sql: {connectors: [orders]}`). The host holds the URL and password.
var SQL SQLNamespace

// Connect is a handle on connector name; nothing is checked before the first statement.
func (SQLNamespace) Connect(name string) *SQLConnector { return &SQLConnector{name: name} }

// SQLConnector is a granted SQL connector, by name. Failures are *HostError values matching
// ErrDenied (not granted, authentication failed), ErrUnavailable (server down, statement
// timed out), ErrInvalid (bad statement or parameter: the database's own message),
// ErrTooLarge (over max_rows/max_result_bytes) or ErrQuota (transactions per call).
type SQLConnector struct{ name string }

// Name is the connector's name.
func (c *SQLConnector) Name() string { return c.name }

// Query runs a statement that returns rows.
func (c *SQLConnector) Query(stmt Statement, params ...any) (*Rows, error) {
	return sqlQuery(c.name, stmt, params, 0)
}

// Execute runs a statement that changes rows, in its own committed transaction.
func (c *SQLConnector) Execute(stmt Statement, params ...any) (ExecResult, error) {
	return sqlExecute(c.name, stmt, params, 0)
}

// Begin opens a transaction. It lives until Commit or Rollback and never past the plugin
// call: the host rolls back one the call left open. Write `defer tx.Rollback()` after
// Begin; after a Commit it does nothing.
func (c *SQLConnector) Begin() (*Tx, error) {
	id := hostSQLBegin(c.name)
	changed(sqlState)
	if id < 0 {
		return nil, statusError("sql.begin", int32(id))
	}
	return &Tx{conn: c.name, id: id}, nil
}

// Tx is an open transaction.
type Tx struct {
	conn string
	id   int64
	done bool
}

// Query runs a statement that returns rows inside the transaction.
func (t *Tx) Query(stmt Statement, params ...any) (*Rows, error) {
	return sqlQuery(t.conn, stmt, params, t.id)
}

// Execute runs a statement that changes rows inside the transaction.
func (t *Tx) Execute(stmt Statement, params ...any) (ExecResult, error) {
	return sqlExecute(t.conn, stmt, params, t.id)
}

// Commit commits; an error means nothing was committed (the transaction is gone either way).
func (t *Tx) Commit() error {
	if t.done {
		return &HostError{Op: "sql.commit", Status: -1, Message: "the transaction has ended",
			err: ErrNotFound}
	}
	t.done = true
	status := hostSQLCommit(t.id)
	changed(sqlState)
	if status < 0 {
		return statusError("sql.commit", status)
	}
	return nil
}

// Rollback rolls back; after Commit or Rollback it does nothing and returns nil.
func (t *Tx) Rollback() error {
	if t.done {
		return nil
	}
	t.done = true
	status := hostSQLRollback(t.id)
	changed(sqlState)
	if status < 0 {
		return statusError("sql.rollback", status)
	}
	return nil
}

type sqlRequest struct {
	SQL    string            `json:"sql"`
	Params []json.RawMessage `json:"params"`
	Tx     int64             `json:"tx,omitempty"`
}

func encodeRequest(stmt Statement, params []any, tx int64) ([]byte, error) {
	req := sqlRequest{SQL: string(stmt), Params: make([]json.RawMessage, len(params)), Tx: tx}
	for i, p := range params {
		v, err := encodeSQLValue(p)
		if err != nil {
			return nil, &HostError{Op: "sql", Status: -3, err: ErrInvalid,
				Message: "INVALID: params[" + strconv.Itoa(i) + "]: " + err.Error()}
		}
		req.Params[i] = v
	}
	return json.Marshal(req)
}

func tagged(tag string, v any) (json.RawMessage, error) {
	return json.Marshal(map[string]any{tag: v})
}

func encodeSQLValue(p any) (json.RawMessage, error) {
	switch v := p.(type) {
	case nil:
		return json.RawMessage("null"), nil
	case bool, string, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return json.Marshal(v)
	case float32:
		return encodeSQLValue(float64(v))
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, errors.New("NaN and infinities are not SQL parameters")
		}
		return json.Marshal(v)
	case []byte:
		return tagged("$bytes", base64.StdEncoding.EncodeToString(v))
	case JSON:
		return tagged("$json", v.Value)
	case time.Time:
		return tagged("$timestamp", v.Format(time.RFC3339Nano))
	case Timestamp:
		return tagged("$timestamp", string(v))
	case Date:
		return tagged("$date", string(v))
	case Time:
		return tagged("$time", string(v))
	case Decimal:
		return tagged("$decimal", string(v))
	}
	return nil, errors.New("unsupported parameter type (wrap objects and arrays in omnicore.JSON)")
}

func decodeSQLValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, nil
		}
		return x.Float64()
	case map[string]any:
		for tag, inner := range x {
			text, _ := inner.(string)
			switch tag {
			case "$bytes":
				return base64.StdEncoding.DecodeString(text)
			case "$json":
				var doc struct {
					V any `json:"$json"`
				}
				if err := json.Unmarshal(raw, &doc); err != nil {
					return nil, err
				}
				return JSON{Value: doc.V}, nil
			case "$timestamp":
				return Timestamp(text), nil
			case "$date":
				return Date(text), nil
			case "$time":
				return Time(text), nil
			case "$decimal":
				return Decimal(text), nil
			}
			return nil, errors.New("unknown tag " + tag)
		}
	}
	return v, nil
}

func sqlQuery(conn string, stmt Statement, params []any, tx int64) (*Rows, error) {
	req, err := encodeRequest(stmt, params, tx)
	if err != nil {
		return nil, err
	}
	if tested != nil {
		tested.answerSQL(conn, req, true)
	}
	block, err := unpackBlock("sql.query", hostSQLQuery(conn, bytesPtr(req), uint32(len(req))))
	changed(sqlState)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Columns []SQLColumn         `json:"columns"`
		Rows    [][]json.RawMessage `json:"rows"`
	}
	if err := json.Unmarshal(block, &doc); err != nil {
		return nil, malformed("sql.query", err)
	}
	rows := &Rows{Columns: doc.Columns, Rows: make([][]any, len(doc.Rows))}
	for i, row := range doc.Rows {
		rows.Rows[i] = make([]any, len(row))
		for c, cell := range row {
			if rows.Rows[i][c], err = decodeSQLValue(cell); err != nil {
				return nil, malformed("sql.query", err)
			}
		}
	}
	return rows, nil
}

func sqlExecute(conn string, stmt Statement, params []any, tx int64) (ExecResult, error) {
	var result ExecResult
	req, err := encodeRequest(stmt, params, tx)
	if err != nil {
		return result, err
	}
	if tested != nil {
		tested.answerSQL(conn, req, false)
	}
	block, err := unpackBlock("sql.execute", hostSQLExecute(conn, bytesPtr(req), uint32(len(req))))
	changed(sqlState)
	if err != nil {
		return result, err
	}
	if err := json.Unmarshal(block, &result); err != nil {
		return result, malformed("sql.execute", err)
	}
	return result, nil
}
