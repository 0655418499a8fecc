//go:build !wasm

package omnicore

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// SQLCall is one statement a plugin ran against the TestHost; Begin, Commit and Rollback
// are recorded as the statements "BEGIN", "COMMIT" and "ROLLBACK" with their transaction.
type SQLCall struct {
	Connector string
	SQL       string
	// Params as the host decodes them: nil, bool, int64, float64, string, []byte, JSON,
	// Timestamp, Date, Time or Decimal.
	Params []any
	// Tx is the transaction the statement ran in, 0 outside one.
	Tx    int64
	Query bool
}

// DefaultRedisPrefix is the TestHost's Redis key prefix when RedisPrefix is empty: the
// host's "omnicore:{plugin}:" for a plugin named "plugin".
const DefaultRedisPrefix = "omnicore:plugin:"

type sqlState struct {
	nextTx int64
	open   map[int64]string
}

// redisState is the TestHost's in-memory Redis: values are string, map[string]string,
// []string or map[string]bool, by full key (prefix included).
type redisState struct {
	data map[string]any
	ttl  map[string]int64
}

func (h *TestHost) redisPrefix() string {
	if h.RedisPrefix == "" {
		return DefaultRedisPrefix
	}
	return h.RedisPrefix
}

// RedisKeys is the fake Redis's keys as the server would hold them (prefix included), sorted.
func (h *TestHost) RedisKeys() []string {
	keys := []string{}
	for k := range h.redis.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// RedisTTL is the seconds to live set on key (without the prefix), -1 when none. The fake's
// clock does not move, so nothing expires by itself.
func (h *TestHost) RedisTTL(key string) int64 {
	if n, ok := h.redis.ttl[h.redisPrefix()+key]; ok {
		return n
	}
	return -1
}

func errorBlock(message string) uint64 { return block([]byte(message), true) }

func hostSQLRun(conn string, req *byte, reqLen uint32, query bool) uint64 {
	var raw struct {
		SQL    string            `json:"sql"`
		Params []json.RawMessage `json:"params"`
		Tx     int64             `json:"tx"`
	}
	if err := json.Unmarshal(inBytes(req, reqLen), &raw); err != nil {
		return errorBlock("INVALID: " + err.Error())
	}
	call := SQLCall{Connector: conn, SQL: raw.SQL, Tx: raw.Tx, Query: query}
	for i, p := range raw.Params {
		v, err := decodeSQLValue(p)
		if err != nil {
			return errorBlock("INVALID: params[" + strconv.Itoa(i) + "]: " + err.Error())
		}
		call.Params = append(call.Params, v)
	}
	if raw.Tx != 0 && host.sql.open[raw.Tx] != conn {
		return errorBlock("INVALID: transaction " + itoa64(raw.Tx) + " is not open on connector " + conn)
	}
	host.SQLCalls = append(host.SQLCalls, call)
	if host.SQL == nil {
		return errorBlock("UNAVAILABLE: connector " + conn + ": the test host has no SQL (set TestHost.SQL)")
	}
	answer, err := host.SQL(call)
	if err != nil {
		return errorBlock(err.Error())
	}
	var out any
	switch a := answer.(type) {
	case *Rows:
		doc := map[string]any{"columns": a.Columns, "rows": [][]json.RawMessage{}}
		rows := [][]json.RawMessage{}
		for _, row := range a.Rows {
			if len(row) != len(a.Columns) {
				// The host never answers so: a plugin tested on it would fail live.
				return errorBlock("INVALID: the test's rows: a row of " + strconv.Itoa(len(row)) +
					" values for " + strconv.Itoa(len(a.Columns)) + " columns")
			}
			cells := make([]json.RawMessage, len(row))
			for c, cell := range row {
				if cells[c], err = encodeSQLValue(cell); err != nil {
					return errorBlock("INVALID: the test's rows: " + err.Error())
				}
			}
			rows = append(rows, cells)
		}
		doc["rows"] = rows
		if a.Columns == nil {
			doc["columns"] = []SQLColumn{}
		}
		out = doc
	case ExecResult:
		out = a
	case nil:
		if query {
			out = map[string]any{"columns": []any{}, "rows": []any{}}
		} else {
			out = ExecResult{}
		}
	default:
		return errorBlock("INVALID: TestHost.SQL must answer *Rows or ExecResult")
	}
	encoded, _ := json.Marshal(out)
	return block(encoded, false)
}

func hostSQLQuery(conn string, req *byte, reqLen uint32) uint64 {
	return hostSQLRun(conn, req, reqLen, true)
}

func hostSQLExecute(conn string, req *byte, reqLen uint32) uint64 {
	return hostSQLRun(conn, req, reqLen, false)
}

func hostSQLBegin(conn string) int64 {
	if host.sql.open == nil {
		host.sql.open = map[int64]string{}
	}
	host.sql.nextTx++
	host.sql.open[host.sql.nextTx] = conn
	host.SQLCalls = append(host.SQLCalls, SQLCall{Connector: conn, SQL: "BEGIN", Tx: host.sql.nextTx})
	return host.sql.nextTx
}

func endTx(tx int64, what string) int32 {
	conn, ok := host.sql.open[tx]
	if !ok {
		return -1
	}
	delete(host.sql.open, tx)
	host.SQLCalls = append(host.SQLCalls, SQLCall{Connector: conn, SQL: what, Tx: tx})
	return 0
}

func hostSQLCommit(tx int64) int32 { return endTx(tx, "COMMIT") }

func hostSQLRollback(tx int64) int32 { return endTx(tx, "ROLLBACK") }

// redisCommands is specs/abi.md §4.11's command list with each command's least and most
// argument counts (-1: no most), read from the host's answers (sdk/contract/host.json, in the
// SDK tree beside this module, in a checkout and in omnicore's wheel alike): anything else
// is DENIED, as on the host.
var redisCommands = sync.OnceValue(func() map[string][2]int {
	_, here, _, _ := runtime.Caller(0)
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "contract", "host.json"))
	if err != nil {
		panic("omnicore TestHost: the host's answers (sdk/contract/host.json) beside the SDK: " +
			err.Error())
	}
	var table struct {
		Redis struct {
			Commands map[string][3]any `json:"commands"`
		} `json:"redis"`
	}
	if err := json.Unmarshal(raw, &table); err != nil {
		panic("omnicore TestHost: sdk/contract/host.json: " + err.Error())
	}
	commands := map[string][2]int{}
	for name, spec := range table.Redis.Commands {
		most := -1
		if n, ok := spec[1].(float64); ok {
			most = int(n)
		}
		commands[name] = [2]int{int(spec[0].(float64)), most}
	}
	return commands
})

// argCounts says how many arguments a command takes, as the host does.
func argCounts(least, most int) string {
	switch {
	case most == least:
		return strconv.Itoa(least)
	case most < 0:
		return strconv.Itoa(least) + " or more"
	}
	return strconv.Itoa(least) + " to " + strconv.Itoa(most)
}

const wrongType = "INVALID: WRONGTYPE Operation against a key holding the wrong kind of value"

type redisError string

func hostRedisCommand(conn string, req *byte, reqLen uint32) uint64 {
	var raw struct {
		Cmd  string          `json:"cmd"`
		Args json.RawMessage `json:"args"`
	}
	if err := json.Unmarshal(inBytes(req, reqLen), &raw); err != nil {
		return errorBlock("INVALID: " + err.Error())
	}
	cmd := strings.ToUpper(raw.Cmd)
	counts, allowed := redisCommands()[cmd]
	if !allowed {
		return errorBlock("DENIED: redis command '" + cmd + "' is not allowed")
	}
	var given []json.RawMessage
	if len(raw.Args) > 0 && string(raw.Args) != "null" {
		if err := json.Unmarshal(raw.Args, &given); err != nil {
			return errorBlock("INVALID: args must be an array")
		}
	}
	if least, most := counts[0], counts[1]; len(given) < least || (most >= 0 && len(given) > most) {
		return errorBlock("INVALID: " + cmd + " takes " + argCounts(least, most) +
			" arguments, got " + strconv.Itoa(len(given)))
	}
	args := make([]string, len(given))
	for i, a := range given {
		var v any
		if err := json.Unmarshal(a, &v); err != nil {
			return errorBlock("INVALID: " + err.Error())
		}
		switch x := v.(type) {
		case string:
			args[i] = x
		case float64:
			args[i] = string(a)
		case map[string]any:
			b64, _ := x["$bytes"].(string)
			decoded, err := base64.StdEncoding.DecodeString(b64)
			if err != nil || len(x) != 1 {
				return errorBlock("INVALID: args[" + strconv.Itoa(i) + "]")
			}
			args[i] = string(decoded)
		default:
			return errorBlock("INVALID: args[" + strconv.Itoa(i) + "] must be a string, an integer or bytes")
		}
	}
	reply, failed := func() (reply any, failed redisError) {
		defer func() {
			if r := recover(); r != nil {
				if e, ok := r.(redisError); ok {
					failed = e
					return
				}
				panic(r)
			}
		}()
		return redisExec(cmd, args), ""
	}()
	if failed != "" {
		return errorBlock(string(failed))
	}
	encoded, _ := json.Marshal(encodeReplyJSON(reply))
	return block(encoded, false)
}

func redisInt(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		panic(redisError("INVALID: value is not an integer or out of range"))
	}
	return n
}

func need(args []string, n int) {
	if len(args) < n {
		panic(redisError("INVALID: wrong number of arguments"))
	}
}

func redisExec(cmd string, args []string) any {
	r := &host.redis
	if r.data == nil {
		r.data, r.ttl = map[string]any{}, map[string]int64{}
	}
	need(args, 1)
	prefix := host.redisPrefix()
	key := prefix + args[0]
	entry, exists := r.data[key]
	str := func() (string, bool) {
		if !exists {
			return "", false
		}
		s, ok := entry.(string)
		if !ok {
			panic(redisError(wrongType))
		}
		return s, true
	}
	add := func(by int64) any {
		current := int64(0)
		if s, ok := str(); ok {
			current = redisInt(s)
		}
		r.data[key] = strconv.FormatInt(current+by, 10)
		return current + by
	}
	switch cmd {
	case "GET", "GETDEL":
		s, ok := str()
		if cmd == "GETDEL" {
			delete(r.data, key)
			delete(r.ttl, key)
		}
		if !ok {
			return nil
		}
		return s
	case "SET", "SETNX":
		need(args, 2)
		nx, xx, keep, ex := cmd == "SETNX", false, false, int64(-1)
		for i := 2; i < len(args); i++ {
			switch o := strings.ToUpper(args[i]); o {
			case "NX":
				nx = true
			case "XX":
				xx = true
			case "KEEPTTL":
				keep = true
			case "EX", "PX":
				need(args, i+2)
				i++
				ex = redisInt(args[i])
				if o == "PX" {
					ex = (ex + 999) / 1000
				}
			default:
				panic(redisError("INVALID: syntax error"))
			}
		}
		if (nx && exists) || (xx && !exists) {
			if cmd == "SETNX" {
				return int64(0)
			}
			return nil
		}
		r.data[key] = args[1]
		if ex >= 0 {
			r.ttl[key] = ex
		} else if !keep {
			delete(r.ttl, key)
		}
		if cmd == "SETNX" {
			return int64(1)
		}
		return "OK"
	case "MGET":
		out := []any{}
		for _, a := range args {
			s, ok := r.data[prefix+a].(string)
			if ok {
				out = append(out, s)
			} else {
				out = append(out, nil)
			}
		}
		return out
	case "DEL", "EXISTS":
		n := int64(0)
		for _, a := range args {
			if _, ok := r.data[prefix+a]; ok {
				n++
				if cmd == "DEL" {
					delete(r.data, prefix+a)
					delete(r.ttl, prefix+a)
				}
			}
		}
		return n
	case "INCR":
		return add(1)
	case "DECR":
		return add(-1)
	case "INCRBY":
		need(args, 2)
		return add(redisInt(args[1]))
	case "DECRBY":
		need(args, 2)
		return add(-redisInt(args[1]))
	case "EXPIRE", "PEXPIRE":
		need(args, 2)
		secs := redisInt(args[1])
		if cmd == "PEXPIRE" {
			secs = (secs + 999) / 1000
		}
		if !exists {
			return int64(0)
		}
		if secs <= 0 {
			delete(r.data, key)
			delete(r.ttl, key)
		} else {
			r.ttl[key] = secs
		}
		return int64(1)
	case "TTL", "PTTL":
		if !exists {
			return int64(-2)
		}
		n, ok := r.ttl[key]
		if !ok {
			return int64(-1)
		}
		if cmd == "PTTL" {
			return n * 1000
		}
		return n
	case "PERSIST":
		_, ok := r.ttl[key]
		delete(r.ttl, key)
		if ok {
			return int64(1)
		}
		return int64(0)
	case "PUBLISH":
		need(args, 2)
		host.Events = append(host.Events, Published{Topic: "redis:" + key, Payload: []byte(args[1])})
		return int64(0)
	}
	switch cmd[0] {
	case 'H':
		return redisHash(cmd, key, args, entry, exists)
	case 'L', 'R':
		return redisList(cmd, key, args, entry, exists)
	}
	return redisSet(cmd, key, args, entry, exists)
}

func store(key string, value any, empty bool) {
	if empty {
		delete(host.redis.data, key)
		delete(host.redis.ttl, key)
	} else {
		host.redis.data[key] = value
	}
}

func redisHash(cmd, key string, args []string, entry any, exists bool) any {
	h := map[string]string{}
	if exists {
		var ok bool
		if h, ok = entry.(map[string]string); !ok {
			panic(redisError(wrongType))
		}
	}
	defer func() { store(key, h, len(h) == 0) }()
	switch cmd {
	case "HGET":
		need(args, 2)
		if v, ok := h[args[1]]; ok {
			return v
		}
		return nil
	case "HEXISTS":
		need(args, 2)
		if _, ok := h[args[1]]; ok {
			return int64(1)
		}
		return int64(0)
	case "HLEN":
		return int64(len(h))
	case "HGETALL":
		out := map[string]any{}
		for k, v := range h {
			out[k] = v
		}
		return out
	case "HSET":
		if len(args) < 3 || len(args)%2 == 0 {
			panic(redisError("INVALID: wrong number of arguments"))
		}
		n := int64(0)
		for i := 1; i < len(args); i += 2 {
			if _, ok := h[args[i]]; !ok {
				n++
			}
			h[args[i]] = args[i+1]
		}
		return n
	case "HDEL":
		n := int64(0)
		for _, f := range args[1:] {
			if _, ok := h[f]; ok {
				n++
				delete(h, f)
			}
		}
		return n
	}
	need(args, 3) // HINCRBY
	current := int64(0)
	if v, ok := h[args[1]]; ok {
		current = redisInt(v)
	}
	current += redisInt(args[2])
	h[args[1]] = strconv.FormatInt(current, 10)
	return current
}

func redisList(cmd, key string, args []string, entry any, exists bool) any {
	var list []string
	if exists {
		var ok bool
		if list, ok = entry.([]string); !ok {
			panic(redisError(wrongType))
		}
	}
	defer func() { store(key, list, len(list) == 0) }()
	span := func() (int, int) {
		need(args, 3)
		n := int64(len(list))
		norm := func(i int64) int64 {
			if i < 0 {
				i += n
			}
			return max(i, 0)
		}
		a, b := norm(redisInt(args[1])), min(norm(redisInt(args[2])), n-1)
		if a > b || n == 0 {
			return 0, 0
		}
		return int(a), int(b) + 1
	}
	switch cmd {
	case "LPUSH", "RPUSH":
		need(args, 2)
		for _, v := range args[1:] {
			if cmd == "LPUSH" {
				list = append([]string{v}, list...)
			} else {
				list = append(list, v)
			}
		}
		return int64(len(list))
	case "LPOP", "RPOP":
		if len(list) == 0 {
			return nil
		}
		if cmd == "LPOP" {
			v := list[0]
			list = list[1:]
			return v
		}
		v := list[len(list)-1]
		list = list[:len(list)-1]
		return v
	case "LLEN":
		return int64(len(list))
	case "LRANGE":
		a, b := span()
		out := []any{}
		for _, v := range list[a:b] {
			out = append(out, v)
		}
		return out
	}
	a, b := span() // LTRIM
	list = append([]string(nil), list[a:b]...)
	return "OK"
}

func redisSet(cmd, key string, args []string, entry any, exists bool) any {
	set := map[string]bool{}
	if exists {
		var ok bool
		if set, ok = entry.(map[string]bool); !ok {
			panic(redisError(wrongType))
		}
	}
	defer func() { store(key, set, len(set) == 0) }()
	switch cmd {
	case "SADD", "SREM":
		n := int64(0)
		for _, m := range args[1:] {
			if set[m] == (cmd == "SREM") {
				n++
			}
			if cmd == "SADD" {
				set[m] = true
			} else {
				delete(set, m)
			}
		}
		return n
	case "SISMEMBER":
		need(args, 2)
		if set[args[1]] {
			return int64(1)
		}
		return int64(0)
	case "SCARD":
		return int64(len(set))
	}
	members := []string{}
	for m := range set {
		members = append(members, m)
	}
	sort.Strings(members)
	out := []any{}
	for _, m := range members {
		out = append(out, m)
	}
	return out
}

// encodeReplyJSON writes a reply the way the host does (the TestHost fake uses it).
func encodeReplyJSON(v any) any {
	switch x := v.(type) {
	case string:
		if !utf8.ValidString(x) {
			return map[string]string{"$bytes": base64.StdEncoding.EncodeToString([]byte(x))}
		}
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = encodeReplyJSON(item)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, item := range x {
			out[k] = encodeReplyJSON(item)
		}
		return out
	}
	return v
}
