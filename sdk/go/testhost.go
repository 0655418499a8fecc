package omnicore

import (
	"encoding/json"
	"strconv"
)

// TestHost sets up and shows the host a test runs on. `omnicore test` compiles a plugin's
// tests to wasm (GOOS=wasip1 GOARCH=wasm go test) and runs each test in a fresh instance on
// omnicore's test host: the host's own capability code, every capability granted, over
// in-memory stores (kv, memory, vectors, tasks, events), with HTTP and SQL answered by the
// functions below and an in-memory Redis. So a handler meets in a test what it meets live.
//
//	func TestGreet(t *testing.T) {
//		host := omnicore.UseTestHost(&omnicore.TestHost{Config: map[string]any{"greeting": "Hi"}})
//		out, err := Greet(GreetInput{Name: ptr("Ada")})
//		// check out, err and host.Logs
//	}
//
// Test the typed handler functions, not the //go:wasmexport shims: those take wasm addresses.
// Config, LogLevel, KV, Secrets and RedisPrefix are given to the host by UseTestHost (call it
// again to change them); HTTP and SQL are called when the plugin sends a request. Logs, KV,
// Events, Tasks and SQLCalls show what the host holds, brought up to date after every host
// call that changes them.
type TestHost struct {
	// Config is the plugin's config section (omnicore:config).
	Config map[string]any
	// LogLevel is the lowest level kept in Logs (the zero value keeps everything).
	LogLevel Level
	// Logs is the plugin's log lines (omnicore:log).
	Logs []LogRecord
	// KV is the key-value store (omnicore:kv): what UseTestHost stores first, then what the
	// store holds.
	KV map[string][]byte
	// Secrets are the secrets exposed to the plugin; a nil value is exposed but not set.
	// Any other name is denied.
	Secrets map[string][]byte
	// Events is what the plugin published (omnicore:events), topics as the plugin named them.
	Events []Published
	// Tasks is what the plugin enqueued (omnicore:tasks: only its own handlers, as live).
	Tasks []QueuedTask
	// HTTP answers omnicore:http requests, which the host reads as it does live first; nil
	// answers none (the request fails UNAVAILABLE). An error's message may start with a
	// status name ("DENIED: ...").
	HTTP func(Request) (*Response, error)
	// SQL answers omnicore:sql statements: *Rows for a query, ExecResult for an execute (nil
	// for none). No database runs: the host checks the answer has a server's shape (one
	// value per column). An error's message may start with a status name ("UNAVAILABLE:
	// ..."). nil answers none (UNAVAILABLE). SQLCalls is the statements the host ran,
	// BEGIN/COMMIT/ROLLBACK included.
	SQL      func(SQLCall) (any, error)
	SQLCalls []SQLCall
	// RedisPrefix is the Redis key prefix RedisKeys and RedisPublished show
	// (DefaultRedisPrefix when empty). Redis is in memory, with §4.11's commands.
	RedisPrefix string
}

// LogRecord is one line a plugin logged.
type LogRecord struct {
	Level   Level
	Message string
}

// Published is one event a plugin published (or one Redis message, see RedisPublished).
type Published struct {
	Topic   string
	Payload []byte
}

// QueuedTask is one task a plugin enqueued.
type QueuedTask struct {
	ID        int64
	Handler   string
	Payload   []byte
	DelayMS   int64
	Cancelled bool
}

// SQLCall is one statement a plugin ran; Begin, Commit and Rollback are recorded as the
// statements "BEGIN", "COMMIT" and "ROLLBACK" with their transaction.
type SQLCall struct {
	Connector string
	SQL       string
	// Params as the host decodes them: nil, bool, int64, float64, string, []byte, JSON,
	// Timestamp, Date, Time or Decimal.
	Params []any
	// Tx is the transaction the statement ran in (the test's first is 1), 0 outside one.
	Tx int64
	// Query is whether the plugin asked for rows (Query) rather than a count (Execute). Only
	// the calls of TestHost.SQL say: the host's record, SQLCalls, does not.
	Query bool
}

// DefaultRedisPrefix is the test host's Redis key prefix: the host's "omnicore:{plugin}:"
// for a plugin named "plugin".
const DefaultRedisPrefix = "omnicore:plugin:"

// hostState is which part of what a TestHost shows a host call changed.
type hostState uint8

const (
	logState hostState = 1 << iota
	kvState
	eventState
	taskState
	sqlState
	allState = logState | kvState | eventState | taskState | sqlState
)

// testHooks is what the capability wrappers ask of the TestHost in use.
type testHooks interface {
	refresh(what hostState)
	answerHTTP(req Request)
	answerSQL(conn string, req []byte, query bool)
}

// tested is the TestHost in use. It is set only by UseTestHost, so in a plugin, which never
// calls it, it stays nil and the linker leaves the omnicore:testing imports out.
var tested testHooks

// changed brings the TestHost in use up to date after a host call that changed what.
func changed(what hostState) {
	if tested != nil {
		tested.refresh(what)
	}
}

// UseTestHost makes h the running test's host: the host starts afresh with h's config, log
// level, secrets, Redis prefix and KV, and h shows what it holds from then on. It returns h.
func UseTestHost(h *TestHost) *TestHost {
	testReset()
	config := h.Config
	if config == nil {
		config = map[string]any{}
	}
	encoded, err := json.Marshal(config)
	if err != nil || testSetConfig(bytesPtr(encoded), uint32(len(encoded))) != 0 {
		panic("omnicore: TestHost.Config is not a JSON object: " + strconv.Quote(string(encoded)))
	}
	testSetLogLevel(int32(h.LogLevel))
	for name, value := range h.Secrets {
		present := int32(0)
		if value != nil {
			present = 1
		}
		testSetSecret(name, bytesPtr(value), uint32(len(value)), present)
	}
	if h.RedisPrefix != "" {
		testSetRedisPrefix(h.RedisPrefix)
	}
	tested = nil // h shows the store once it is filled, not each key on the way
	for key, value := range h.KV {
		if err := KV.Set(key, value); err != nil {
			panic("omnicore: TestHost.KV: " + err.Error())
		}
	}
	tested = h
	h.refresh(allState)
	return h
}

// read is one of omnicore:testing's JSON answers, decoded into v.
func read(what string, call func(out *byte, capacity uint32) int32, v any) {
	raw, err := readBuffered("testing."+what, call)
	if err == nil {
		err = json.Unmarshal(raw, v)
	}
	if err != nil {
		panic("omnicore: the test host's " + what + ": " + err.Error())
	}
}

// items is one of omnicore:testing's answers that is an array of arrays.
func items(what string, call func(out *byte, capacity uint32) int32) [][]json.RawMessage {
	var raw [][]json.RawMessage
	read(what, call, &raw)
	return raw
}

// fill decodes an item's values into the pointers given (null leaves the zero value).
func fill(what string, item []json.RawMessage, into ...any) {
	for f, p := range into {
		if f < len(item) && json.Unmarshal(item[f], p) != nil {
			panic("omnicore: the test host's " + what + ": " + string(item[f]))
		}
	}
}

func (h *TestHost) refresh(what hostState) {
	if what&logState != 0 {
		lines := items("logs", testLogs)
		h.Logs = make([]LogRecord, len(lines))
		for i, line := range lines {
			fill("logs", line, &h.Logs[i].Level, &h.Logs[i].Message)
		}
	}
	if what&kvState != 0 {
		h.KV = map[string][]byte{}
		read("kv", testKV, &h.KV)
	}
	if what&eventState != 0 {
		h.Events = published("events", testEvents)
	}
	if what&taskState != 0 {
		tasks := items("tasks", testTasks)
		h.Tasks = make([]QueuedTask, len(tasks))
		for i, item := range tasks {
			t := &h.Tasks[i]
			fill("tasks", item, &t.ID, &t.Handler, &t.Payload, &t.DelayMS, &t.Cancelled)
		}
	}
	if what&sqlState != 0 {
		statements := items("sql_statements", testSQLStatements)
		h.SQLCalls = make([]SQLCall, len(statements))
		for i, item := range statements {
			call := &h.SQLCalls[i]
			var params []json.RawMessage
			fill("sql_statements", item, &call.Connector, &call.SQL, &params, &call.Tx)
			for _, p := range params {
				v, err := decodeSQLValue(p)
				if err != nil {
					panic("omnicore: the test host's sql_statements: " + err.Error())
				}
				call.Params = append(call.Params, v)
			}
		}
	}
}

func published(what string, call func(out *byte, capacity uint32) int32) []Published {
	raw := items(what, call)
	out := make([]Published, len(raw))
	for i, item := range raw {
		fill(what, item, &out[i].Topic, &out[i].Payload)
	}
	return out
}

// RedisKeys is the Redis keys as the server holds them (prefix included), sorted.
func (h *TestHost) RedisKeys() []string {
	keys := []string{}
	read("redis_keys", testRedisKeys, &keys)
	return keys
}

// RedisTTL is the seconds to live set on key (without the prefix), -1 when none. The test
// host's clock does not move, so nothing expires by itself.
func (h *TestHost) RedisTTL(key string) int64 { return testRedisTTL(key) }

// RedisPublished is the messages the plugin published with Redis PUBLISH, each channel as
// the server has it (prefix included).
func (h *TestHost) RedisPublished() []Published {
	return published("redis_published", testRedisPublished)
}

// answerHTTP gives the host TestHost.HTTP's answer to the request about to be sent.
func (h *TestHost) answerHTTP(req Request) {
	if h.HTTP == nil {
		return
	}
	resp, err := h.HTTP(req)
	if err != nil {
		testHTTPAnswer(err.Error(), nil, 0, 1)
		return
	}
	headers := [][2]string{}
	for name, value := range resp.Headers {
		headers = append(headers, [2]string{name, value})
	}
	head, _ := json.Marshal(map[string]any{"status": resp.Status, "headers": headers})
	testHTTPAnswer(string(head), bytesPtr(resp.Body), uint32(len(resp.Body)), 0)
}

// answerSQL gives the host TestHost.SQL's answer to the statement about to run (req is the
// request the SDK sends, §4.10).
func (h *TestHost) answerSQL(conn string, req []byte, query bool) {
	if h.SQL == nil {
		return
	}
	var raw sqlRequest
	if json.Unmarshal(req, &raw) != nil {
		return // the host refuses it as it does live
	}
	call := SQLCall{Connector: conn, SQL: raw.SQL, Tx: raw.Tx, Query: query}
	for _, p := range raw.Params {
		v, err := decodeSQLValue(p)
		if err != nil {
			return
		}
		call.Params = append(call.Params, v)
	}
	answer, err := h.SQL(call)
	if err != nil {
		testSQLAnswer(err.Error(), 1)
		return
	}
	var doc any
	switch a := answer.(type) {
	case *Rows:
		if !query {
			doc = ExecResult{}
			break
		}
		doc, err = rowsDocument(a)
	case ExecResult:
		if query {
			doc = map[string]any{"columns": []any{}, "rows": []any{}}
			break
		}
		doc = a
	case nil:
		doc = map[string]any{"columns": []any{}, "rows": []any{}}
		if !query {
			doc = ExecResult{}
		}
	default:
		panic("omnicore: TestHost.SQL must answer *Rows or ExecResult")
	}
	if err != nil {
		panic("omnicore: TestHost.SQL's rows: " + err.Error())
	}
	encoded, _ := json.Marshal(doc)
	testSQLAnswer(string(encoded), 0)
}

// rowsDocument is rows as a server's answer (§4.10): the cells as the SDK sends parameters.
func rowsDocument(rows *Rows) (any, error) {
	columns := rows.Columns
	if columns == nil {
		columns = []SQLColumn{}
	}
	cells := make([][]json.RawMessage, len(rows.Rows))
	for i, row := range rows.Rows {
		cells[i] = make([]json.RawMessage, len(row))
		for c, cell := range row {
			var err error
			if cells[i][c], err = encodeSQLValue(cell); err != nil {
				return nil, err
			}
		}
	}
	return map[string]any{"columns": columns, "rows": cells}, nil
}
