//go:build !wasm

package omnicore

// A native build (an editor's, `go vet`'s) compiles, but has no host: the host functions
// are the test host's, which runs the tests compiled to wasm. Every one panics saying so.

const noHost = "omnicore: host functions run on omnicore's test host: run `omnicore test` " +
	"(or GOOS=wasip1 GOARCH=wasm go test after eval \"$(omnicore env)\")"

func hostConfigGet(string, *byte, uint32) int32           { panic(noHost) }
func hostEventsPublish(string, *byte, uint32) int32       { panic(noHost) }
func hostHTTPRequest(*byte, uint32, *byte, uint32) uint64 { panic(noHost) }
func hostKVGet(string, *byte, uint32) int32               { panic(noHost) }
func hostKVSet(string, *byte, uint32) int32               { panic(noHost) }
func hostKVDelete(string) int32                           { panic(noHost) }
func hostKVIncr(string, int64, *[8]byte) int32            { panic(noHost) }
func hostKVList(string, *byte, uint32) int32              { panic(noHost) }
func hostLogWrite(int32, string)                          { panic(noHost) }
func hostLogEnabled(int32) int32                          { panic(noHost) }
func hostMemoryRemember(int32, *byte, uint32) int64       { panic(noHost) }
func hostMemoryRecall(*byte, uint32, *byte, uint32) int32 { panic(noHost) }
func hostMemoryForget(int64) int32                        { panic(noHost) }
func hostSecretsGet(string, *byte, uint32) int32          { panic(noHost) }
func hostTasksEnqueue(string, *byte, uint32, int64) int64 { panic(noHost) }
func hostTasksCancel(int64) int32                         { panic(noHost) }
func hostVectorsUpsert(string, string, *float32, uint32, *byte, uint32) int32 {
	panic(noHost)
}
func hostVectorsSearch(string, *float32, uint32, int32) uint64 { panic(noHost) }
func hostVectorsDelete(string, string) int32                   { panic(noHost) }
func hostVectorsQuery(string, *float32, uint32, int32, *byte, uint32) uint64 {
	panic(noHost)
}
func hostSQLQuery(string, *byte, uint32) uint64     { panic(noHost) }
func hostSQLExecute(string, *byte, uint32) uint64   { panic(noHost) }
func hostSQLBegin(string) int64                     { panic(noHost) }
func hostSQLCommit(int64) int32                     { panic(noHost) }
func hostSQLRollback(int64) int32                   { panic(noHost) }
func hostRedisCommand(string, *byte, uint32) uint64 { panic(noHost) }

func testReset()                                  { panic(noHost) }
func testSetConfig(*byte, uint32) int32           { panic(noHost) }
func testSetLogLevel(int32)                       { panic(noHost) }
func testSetSecret(string, *byte, uint32, int32)  { panic(noHost) }
func testSetRedisPrefix(string)                   { panic(noHost) }
func testHTTPAnswer(string, *byte, uint32, int32) { panic(noHost) }
func testSQLAnswer(string, int32)                 { panic(noHost) }
func testLogs(*byte, uint32) int32                { panic(noHost) }
func testKV(*byte, uint32) int32                  { panic(noHost) }
func testEvents(*byte, uint32) int32              { panic(noHost) }
func testTasks(*byte, uint32) int32               { panic(noHost) }
func testSQLStatements(*byte, uint32) int32       { panic(noHost) }
func testRedisKeys(*byte, uint32) int32           { panic(noHost) }
func testRedisPublished(*byte, uint32) int32      { panic(noHost) }
func testRedisTTL(string) int64                   { panic(noHost) }
