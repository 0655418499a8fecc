//go:build wasm

package omnicore

// omnicore:testing, the test host's own functions (omnicore test, host/omnicore/toolchains/
// testhost/control.py): set up the running test's host, read back what the plugin did.
// Only UseTestHost and TestHost's methods reach them, so a plugin, which calls neither,
// never imports them.

//go:wasmimport omnicore:testing reset
func testReset()

//go:wasmimport omnicore:testing set_config
func testSetConfig(json *byte, jsonLen uint32) int32

//go:wasmimport omnicore:testing set_log_level
func testSetLogLevel(level int32)

//go:wasmimport omnicore:testing set_secret
func testSetSecret(name string, value *byte, valueLen uint32, present int32)

//go:wasmimport omnicore:testing set_redis_prefix
func testSetRedisPrefix(prefix string)

//go:wasmimport omnicore:testing http_answer
func testHTTPAnswer(head string, body *byte, bodyLen uint32, failed int32)

//go:wasmimport omnicore:testing sql_answer
func testSQLAnswer(answer string, failed int32)

//go:wasmimport omnicore:testing logs
func testLogs(out *byte, outCap uint32) int32

//go:wasmimport omnicore:testing kv
func testKV(out *byte, outCap uint32) int32

//go:wasmimport omnicore:testing events
func testEvents(out *byte, outCap uint32) int32

//go:wasmimport omnicore:testing tasks
func testTasks(out *byte, outCap uint32) int32

//go:wasmimport omnicore:testing sql_statements
func testSQLStatements(out *byte, outCap uint32) int32

//go:wasmimport omnicore:testing redis_keys
func testRedisKeys(out *byte, outCap uint32) int32

//go:wasmimport omnicore:testing redis_published
func testRedisPublished(out *byte, outCap uint32) int32

//go:wasmimport omnicore:testing redis_ttl
func testRedisTTL(key string) int64
