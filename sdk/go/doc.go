// Package omnicore is the Go SDK for omnicore plugins: WebAssembly modules that the
// omnicore host loads into a sandbox and calls by handler name (omnicore ABI v1, see
// specs/abi.md in the omnicore repository).
//
// A plugin is a Go main package built as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
//
// (or simply `omnicore build .`, which also embeds the manifest from omnicore.toml).
//
// Each handler is a real wasm export of type (i32, i32) -> i64, so every handler needs
// one exported shim. The SDK keeps it to one line:
//
//	type In struct{ Name string `json:"name"` }
//	type Out struct{ Message string `json:"message"` }
//
//	func greet(in In) (Out, error) { return Out{Message: "Hello, " + in.Name + "!"}, nil }
//
//	//go:wasmexport greet
//	func greetExport(ptr, size uint32) uint64 { return omnicore.HandleJSON(ptr, size, greet) }
//
//	func main() {}
//
// [Handle] serves raw bytes, [HandleJSON] decodes the input into a Go value and encodes the
// result. A returned error, a malformed input and a panic all become a handler error (the
// ABI's E bit) that the host raises as omnicore.errors.GuestError with the message.
//
// Host capabilities are reached through one value per namespace: [Log], [Config], [KV],
// [Memory], [Vectors], [Tasks], [HTTP], [Events] and [Secrets]. A plugin requests a
// capability simply by calling it: the Go linker only emits the wasm imports that the plugin
// actually reaches, and the operator must grant every namespace except log. Failures of host
// functions are returned as *[HostError] values that match the sentinels [ErrNotFound],
// [ErrDenied], [ErrInvalid], [ErrQuota], [ErrUnavailable] and [ErrTooLarge] with errors.Is.
//
// The SDK exports the allocator pair omni_alloc/omni_free required by the ABI. Blocks handed
// to the host stay referenced from a Go map until the host frees them, so the garbage
// collector never reclaims memory the host still uses.
//
// Handlers are plain Go functions, so they unit-test with `omnicore test`, which compiles
// the tests to wasm and runs each on omnicore's test host (see UseTestHost).
//
// Instances serve one call at a time; a plugin may keep state in package variables between
// calls of one instance, but the host may replace instances at any time, so durable state
// belongs in [KV].
package omnicore
