//go:build !wasm

package omnicore

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"sort"
	"strings"
	"unsafe"
)

// TestHost is the host the SDK talks to when a plugin is compiled for the machine itself
// instead of wasm, which is what `go test` does: the capability wrappers then read and write
// this in-memory host, so handler functions can be unit-tested without a wasm runtime.
// It follows specs/abi.md §4 (status codes included), with no grants: everything is allowed
// unless a field below says otherwise. Only native builds have it.
//
//	func TestGreet(t *testing.T) {
//		host := omnicore.UseTestHost(&omnicore.TestHost{Config: map[string]any{"greeting": "Hi"}})
//		out, err := Greet(GreetInput{Name: ptr("Ada")})
//		// check out, err and host.Logs
//	}
//
// Test the typed handler functions, not the //go:wasmexport shims: those take wasm addresses.
type TestHost struct {
	// Config is the plugin's config section (omnicore:config).
	Config map[string]any
	// LogLevel is the lowest level kept in Logs (the zero value keeps everything).
	LogLevel Level
	// Logs collects omnicore:log lines.
	Logs []LogRecord
	// KV is the key-value store (omnicore:kv).
	KV map[string][]byte
	// Secrets are the secrets exposed to the plugin; a nil value is exposed but not set.
	// Any other name is denied.
	Secrets map[string][]byte
	// Events collects published events.
	Events []Published
	// Tasks collects enqueued tasks; Handlers, when set, lists the handlers tasks may name.
	Tasks    []QueuedTask
	Handlers []string
	// HTTP answers omnicore:http requests; nil denies every request.
	HTTP func(Request) (*Response, error)
	// SQL answers omnicore:sql statements with canned results: *Rows for a query,
	// ExecResult for an execute (nil for none). No database runs; an error's message
	// should start with a status name ("UNAVAILABLE: ..."). nil makes every statement
	// UNAVAILABLE. SQLCalls collects the statements, BEGIN/COMMIT/ROLLBACK included.
	SQL      func(SQLCall) (any, error)
	SQLCalls []SQLCall
	// RedisPrefix is the fake Redis's key prefix (DefaultRedisPrefix when empty). The fake
	// is an in-memory Redis with §4.11's commands; PUBLISH lands in Events as
	// "redis:<prefix><channel>". See RedisKeys and RedisTTL.
	RedisPrefix string

	memories map[int64]memoryEntry
	vectors  map[string]map[string]vectorEntry
	sql      sqlState
	redis    redisState
}

// LogRecord is one line a plugin logged.
type LogRecord struct {
	Level   Level
	Message string
}

// Published is one event a plugin published.
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

type memoryEntry struct {
	tier Tier
	item MemoryItem
}

type vectorEntry struct {
	vec  []float32
	meta map[string]any
}

var host = &TestHost{}

// UseTestHost makes h the host of every capability call and returns it.
func UseTestHost(h *TestHost) *TestHost {
	host = h
	return h
}

func inBytes(p *byte, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return append([]byte(nil), unsafe.Slice(p, n)...)
}

func inFloats(p *float32, n uint32) []float32 {
	if n == 0 {
		return nil
	}
	return append([]float32(nil), unsafe.Slice(p, n)...)
}

// writeOut is the §3.2 caller-buffer convention.
func writeOut(data []byte, out *byte, outCap uint32) int32 {
	if len(data) > 0 && len(data) <= int(outCap) {
		copy(unsafe.Slice(out, outCap), data)
	}
	return int32(len(data))
}

// block is the §3.3 convention: the data goes into a block from omni_alloc.
func block(data []byte, isError bool) uint64 {
	ptr := omniAlloc(uint32(len(data)))
	words := blocks[ptr]
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(data)), data)
	packed := uint64(ptr)<<32 | uint64(len(data))
	if isError {
		packed |= errorBit
	}
	return packed
}

func hostConfigGet(key string, out *byte, outCap uint32) int32 {
	var value any = host.Config
	if value == nil {
		value = map[string]any{}
	}
	if key != "" {
		for _, part := range strings.Split(key, ".") {
			section, ok := value.(map[string]any)
			if !ok {
				return -1
			}
			if value, ok = section[part]; !ok {
				return -1
			}
		}
	}
	if text, ok := value.(string); ok {
		return writeOut([]byte(text), out, outCap)
	}
	encoded, err := json.Marshal(value)
	if err != nil {
		return -3
	}
	return writeOut(encoded, out, outCap)
}

func hostLogWrite(level int32, msg string) {
	if Level(level) >= host.LogLevel {
		host.Logs = append(host.Logs, LogRecord{Level: Level(level), Message: msg})
	}
}

func hostLogEnabled(level int32) int32 {
	if Level(level) >= host.LogLevel {
		return 1
	}
	return 0
}

func hostKVGet(key string, out *byte, outCap uint32) int32 {
	value, ok := host.KV[key]
	if !ok {
		return -1
	}
	return writeOut(value, out, outCap)
}

func hostKVSet(key string, val *byte, valLen uint32) int32 {
	if host.KV == nil {
		host.KV = map[string][]byte{}
	}
	if len(key) == 0 || len(key) > 512 {
		return -3
	}
	host.KV[key] = inBytes(val, valLen)
	return 0
}

func hostKVDelete(key string) int32 {
	if _, ok := host.KV[key]; !ok {
		return 0
	}
	delete(host.KV, key)
	return 1
}

func hostKVIncr(key string, delta int64, out *[8]byte) int32 {
	var n int64
	if raw, ok := host.KV[key]; ok {
		if err := json.Unmarshal(raw, &n); err != nil {
			return -3
		}
	}
	n += delta
	if host.KV == nil {
		host.KV = map[string][]byte{}
	}
	host.KV[key] = []byte(itoa64(n))
	binary.LittleEndian.PutUint64(out[:], uint64(n))
	return 0
}

func itoa64(n int64) string {
	encoded, _ := json.Marshal(n)
	return string(encoded)
}

func hostKVList(prefix string, out *byte, outCap uint32) int32 {
	keys := []string{}
	for key := range host.KV {
		if strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	if len(keys) > 1000 {
		keys = keys[:1000]
	}
	encoded, _ := json.Marshal(keys)
	return writeOut(encoded, out, outCap)
}

func hostMemoryRemember(tier int32, item *byte, itemLen uint32) int64 {
	var entry MemoryItem
	if err := json.Unmarshal(inBytes(item, itemLen), &entry); err != nil || tier < 0 || tier > 2 {
		return -3
	}
	if host.memories == nil {
		host.memories = map[int64]memoryEntry{}
	}
	id := int64(len(host.memories) + 1)
	for host.memories[id].item.Text != "" {
		id++
	}
	host.memories[id] = memoryEntry{tier: Tier(tier), item: entry}
	return id
}

func hostMemoryRecall(query *byte, queryLen uint32, out *byte, outCap uint32) int32 {
	var q RecallQuery
	if err := json.Unmarshal(inBytes(query, queryLen), &q); err != nil || !scalars(q.Filter) {
		return -3
	}
	if q.Limit == 0 {
		q.Limit = 10
	}
	found := []Recalled{}
	for id, m := range host.memories {
		tierOK := len(q.Tiers) == 0
		for _, t := range q.Tiers {
			tierOK = tierOK || t == m.tier
		}
		if tierOK && matchesFilter(m.item.Metadata, q.Filter) &&
			strings.Contains(strings.ToLower(m.item.Text), strings.ToLower(q.Query)) {
			found = append(found, Recalled{ID: id, Tier: m.tier, Text: m.item.Text,
				Metadata: m.item.Metadata, Score: 1})
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].ID > found[j].ID })
	if len(found) > q.Limit {
		found = found[:q.Limit]
	}
	encoded, _ := json.Marshal(found)
	return writeOut(encoded, out, outCap)
}

func hostMemoryForget(id int64) int32 {
	if _, ok := host.memories[id]; !ok {
		return 0
	}
	delete(host.memories, id)
	return 1
}

func hostSecretsGet(name string, out *byte, outCap uint32) int32 {
	value, exposed := host.Secrets[name]
	if !exposed {
		return -2
	}
	if value == nil {
		return -1
	}
	return writeOut(value, out, outCap)
}

func hostTasksEnqueue(handler string, payload *byte, payloadLen uint32, delayMS int64) int64 {
	if host.Handlers != nil {
		known := false
		for _, h := range host.Handlers {
			known = known || h == handler
		}
		if !known {
			return -1
		}
	}
	id := int64(len(host.Tasks) + 1)
	host.Tasks = append(host.Tasks, QueuedTask{ID: id, Handler: handler,
		Payload: inBytes(payload, payloadLen), DelayMS: delayMS})
	return id
}

func hostTasksCancel(id int64) int32 {
	if id < 1 || id > int64(len(host.Tasks)) {
		return -1
	}
	task := &host.Tasks[id-1]
	if task.Cancelled {
		return 0
	}
	task.Cancelled = true
	return 1
}

func hostVectorsUpsert(coll string, id string, vec *float32, dim uint32, meta *byte,
	metaLen uint32) int32 {
	var metadata map[string]any
	if metaLen > 0 {
		if err := json.Unmarshal(inBytes(meta, metaLen), &metadata); err != nil {
			return -3
		}
	}
	if host.vectors == nil {
		host.vectors = map[string]map[string]vectorEntry{}
	}
	entries := host.vectors[coll]
	if entries == nil {
		entries = map[string]vectorEntry{}
		host.vectors[coll] = entries
	}
	for _, e := range entries {
		if len(e.vec) != int(dim) {
			return -3
		}
		break
	}
	entries[id] = vectorEntry{vec: inFloats(vec, dim), meta: metadata}
	return 0
}

func hostVectorsSearch(coll string, vec *float32, dim uint32, k int32) uint64 {
	return hostVectorsQuery(coll, vec, dim, k, nil, 0)
}

func hostVectorsQuery(coll string, vec *float32, dim uint32, k int32, filter *byte,
	filterLen uint32) uint64 {
	var flt map[string]any
	if filterLen > 0 {
		err := json.Unmarshal(inBytes(filter, filterLen), &flt)
		if err != nil || flt == nil || !scalars(flt) {
			return block([]byte("INVALID: the filter must be a JSON object"), true)
		}
	}
	if k < 1 || k > 1000 {
		return block([]byte("INVALID: k must be 1-1000"), true)
	}
	entries, ok := host.vectors[coll]
	if !ok {
		return block([]byte("NOT_FOUND: no collection "+coll), true)
	}
	query := inFloats(vec, dim)
	matches := []Match{}
	for id, e := range entries {
		if len(e.vec) != len(query) {
			return block([]byte("INVALID: dimension mismatch"), true)
		}
		if matchesFilter(e.meta, flt) {
			matches = append(matches, Match{ID: id, Score: cosine(e.vec, query), Metadata: e.meta})
		}
	}
	sort.Slice(matches, func(i, j int) bool { return matches[i].Score > matches[j].Score })
	if len(matches) > int(k) {
		matches = matches[:max(k, 0)]
	}
	encoded, _ := json.Marshal(matches)
	return block(encoded, false)
}

// scalars reports whether every filter value is a string, number or boolean, as the host
// requires.
func scalars(filter map[string]any) bool {
	for _, v := range filter {
		switch v.(type) {
		case string, float64, bool:
		default:
			return false
		}
	}
	return true
}

// matchesFilter is the host's metadata equality filter (abi.md §4.4, §4.5).
func matchesFilter(meta, filter map[string]any) bool {
	for k, want := range filter {
		if got, ok := meta[k]; !ok || got != want {
			return false
		}
	}
	return true
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

func hostVectorsDelete(coll string, id string) int32 {
	entries, ok := host.vectors[coll]
	if !ok {
		return -1
	}
	if _, ok := entries[id]; !ok {
		return 0
	}
	delete(entries, id)
	return 1
}

func hostEventsPublish(topic string, payload *byte, payloadLen uint32) int32 {
	host.Events = append(host.Events, Published{Topic: topic, Payload: inBytes(payload, payloadLen)})
	return 0
}

func hostHTTPRequest(req *byte, reqLen uint32, body *byte, bodyLen uint32) uint64 {
	if host.HTTP == nil {
		return block([]byte("DENIED: the test host allows no HTTP (set TestHost.HTTP)"), true)
	}
	var r Request
	if err := json.Unmarshal(inBytes(req, reqLen), &r); err != nil {
		return block([]byte("INVALID: "+err.Error()), true)
	}
	r.Body = inBytes(body, bodyLen)
	resp, err := host.HTTP(r)
	if err != nil {
		return block([]byte(err.Error()), true)
	}
	head, _ := json.Marshal(resp)
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(head)))
	out = append(append(out, head...), resp.Body...)
	return block(out, false)
}
