package omnicore

import (
	"fmt"
	"strconv"
	"unsafe"
)

// maxAlloc bounds omni_alloc: larger requests get 0 (the ABI's "out of memory") instead of
// a Go runtime abort, and any length the guest returns still fits the 31-bit length field.
const maxAlloc = 1 << 30

// maxMessage is the longest error message the host keeps (specs/abi.md §2.2).
const maxMessage = 4096

// errorBit is the E bit of a packed handler result (specs/abi.md §2.2).
const errorBit = 1 << 31

// blocks keeps every block handed out by omni_alloc reachable until omni_free: the host
// holds only a wasm address, which the Go garbage collector cannot see.
var blocks = map[uint32][]uint64{}

// lastOut keeps the previous handler's output (or error message) alive until the next call,
// as the ABI requires (§2.3); dropping the reference lets the collector reclaim it.
var lastOut []byte

//go:wasmexport omni_alloc
func omniAlloc(size uint32) uint32 {
	if size > maxAlloc {
		return 0
	}
	// []uint64 gives the 8-byte alignment the ABI promises whatever the size class.
	words := make([]uint64, (uint64(size)+7)/8+1)
	ptr := addr(unsafe.Pointer(&words[0]))
	blocks[ptr] = words
	return ptr
}

//go:wasmexport omni_free
func omniFree(ptr, size uint32) {
	delete(blocks, ptr)
}

// omniDescribe answers the build's question of what each handler declared with [Describe]
// does (specs/abi.md §5.1); the host never calls it.
//
//go:wasmexport omni_describe
func omniDescribe(ptr, size uint32) uint64 {
	return Handle(ptr, size, func([]byte) ([]byte, error) { return describeJSON() })
}

func addr(p unsafe.Pointer) uint32 { return uint32(uintptr(p)) }

// takeBlock moves a block the host allocated with omni_alloc (§3.3) out of the allocator's
// table: it is then an ordinary Go slice, freed by the collector once unreferenced.
func takeBlock(ptr, size uint32) []byte {
	words, ok := blocks[ptr]
	if !ok {
		if size == 0 {
			return nil
		}
		panic("omnicore: host returned a block that omni_alloc did not allocate")
	}
	delete(blocks, ptr)
	if uint64(size) > uint64(len(words))*8 {
		panic("omnicore: host returned a block longer than its allocation")
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), size)
}

// Handle runs fn as the handler for one call: ptr and size are the handler export's
// arguments, and the result is what the export must return.
//
// The input slice is the host's input buffer: it is valid only until fn returns, so copy
// what you keep. A returned error, or a panic inside fn, fails the call with that message
// (a panic's message starts with "panic: "); the host raises it as GuestError.
func Handle(ptr, size uint32, fn func(input []byte) ([]byte, error)) (result uint64) {
	lastOut = nil
	defer func() {
		if r := recover(); r != nil {
			result = fail("panic: " + panicMessage(r))
		}
	}()
	var input []byte
	if size > 0 {
		// cap == len, so an append by the handler copies instead of writing past the input
		// into whatever follows it in the host's buffer.
		input = unsafe.Slice((*byte)(unsafe.Add(nil, uintptr(ptr))), size)
	}
	out, err := fn(input)
	if err != nil {
		return fail(err.Error())
	}
	return succeed(out)
}

func succeed(out []byte) uint64 {
	if len(out) == 0 {
		return 0
	}
	if len(out) >= errorBit {
		return fail("output of " + strconv.Itoa(len(out)) + " bytes exceeds the ABI's 2 GiB limit")
	}
	lastOut = out
	return uint64(addr(unsafe.Pointer(&out[0])))<<32 | uint64(len(out))
}

func fail(message string) uint64 {
	if message == "" {
		message = "handler failed without a message"
	}
	if len(message) > maxMessage {
		// The host cuts longer messages anyway (§2.2); cutting here, at a UTF-8 boundary,
		// keeps the text valid and the block small.
		cut := maxMessage
		for cut > 0 && message[cut]&0xC0 == 0x80 {
			cut--
		}
		message = message[:cut]
	}
	lastOut = []byte(message)
	return uint64(addr(unsafe.Pointer(&lastOut[0])))<<32 | errorBit | uint64(len(lastOut))
}

func panicMessage(r any) string {
	switch v := r.(type) {
	case string:
		return v
	case error:
		return v.Error()
	default:
		return fmt.Sprint(v)
	}
}
