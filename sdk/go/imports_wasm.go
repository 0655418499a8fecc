//go:build wasm

package omnicore

// The host functions of specs/abi.md §4, as wasm imports. The Go linker emits only the
// imports a plugin reaches, so a plugin requests exactly the capabilities it calls.
// Tests run on omnicore's test host, which serves them too (testhost.go).

//go:wasmimport omnicore:config get
func hostConfigGet(key string, out *byte, outCap uint32) int32

//go:wasmimport omnicore:events publish
func hostEventsPublish(topic string, payload *byte, payloadLen uint32) int32

//go:wasmimport omnicore:http request
func hostHTTPRequest(req *byte, reqLen uint32, body *byte, bodyLen uint32) uint64

//go:wasmimport omnicore:kv get
func hostKVGet(key string, out *byte, outCap uint32) int32

//go:wasmimport omnicore:kv set
func hostKVSet(key string, val *byte, valLen uint32) int32

//go:wasmimport omnicore:kv delete
func hostKVDelete(key string) int32

//go:wasmimport omnicore:kv incr
func hostKVIncr(key string, delta int64, out *[8]byte) int32

//go:wasmimport omnicore:kv list
func hostKVList(prefix string, out *byte, outCap uint32) int32

//go:wasmimport omnicore:log write
func hostLogWrite(level int32, msg string)

//go:wasmimport omnicore:log enabled
func hostLogEnabled(level int32) int32

//go:wasmimport omnicore:memory remember
func hostMemoryRemember(tier int32, item *byte, itemLen uint32) int64

//go:wasmimport omnicore:memory recall
func hostMemoryRecall(query *byte, queryLen uint32, out *byte, outCap uint32) int32

//go:wasmimport omnicore:memory forget
func hostMemoryForget(id int64) int32

//go:wasmimport omnicore:secrets get
func hostSecretsGet(name string, out *byte, outCap uint32) int32

//go:wasmimport omnicore:tasks enqueue
func hostTasksEnqueue(handler string, payload *byte, payloadLen uint32, delayMS int64) int64

//go:wasmimport omnicore:tasks cancel
func hostTasksCancel(id int64) int32

//go:wasmimport omnicore:vectors upsert
func hostVectorsUpsert(coll string, id string, vec *float32, dim uint32, meta *byte,
	metaLen uint32) int32

//go:wasmimport omnicore:vectors search
func hostVectorsSearch(coll string, vec *float32, dim uint32, k int32) uint64

//go:wasmimport omnicore:vectors delete
func hostVectorsDelete(coll string, id string) int32

//go:wasmimport omnicore:vectors query
func hostVectorsQuery(coll string, vec *float32, dim uint32, k int32, filter *byte,
	filterLen uint32) uint64

//go:wasmimport omnicore:sql query
func hostSQLQuery(conn string, req *byte, reqLen uint32) uint64

//go:wasmimport omnicore:sql execute
func hostSQLExecute(conn string, req *byte, reqLen uint32) uint64

//go:wasmimport omnicore:sql begin
func hostSQLBegin(conn string) int64

//go:wasmimport omnicore:sql commit
func hostSQLCommit(tx int64) int32

//go:wasmimport omnicore:sql rollback
func hostSQLRollback(tx int64) int32

//go:wasmimport omnicore:redis command
func hostRedisCommand(conn string, req *byte, reqLen uint32) uint64
