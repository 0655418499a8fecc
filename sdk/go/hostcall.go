package omnicore

import "unsafe"

// scratch is the first buffer offered to §3.2 functions; most values fit, so most reads
// are one host call plus one copy.
var scratch [1024]byte

// bytesPtr is the wasm address of b's data (nil for an empty slice, which the host accepts
// with a zero length). A *byte parameter tells the compiler the data must stay put.
func bytesPtr(b []byte) *byte {
	if len(b) == 0 {
		return nil
	}
	return &b[0]
}

// readBuffered implements the caller-buffer retry of specs/abi.md §3.2. call gets a buffer
// and returns the full length or a negative status.
func readBuffered(op string, call func(out *byte, capacity uint32) int32) ([]byte, error) {
	n := call(&scratch[0], uint32(len(scratch)))
	if n < 0 {
		return nil, statusError(op, n)
	}
	if int(n) <= len(scratch) {
		return append([]byte(nil), scratch[:n]...), nil
	}
	// The value may change between the calls (another instance writes it), so retry a
	// few times with the size the host last reported.
	for attempt := 0; attempt < 8; attempt++ {
		buf := make([]byte, n)
		m := call(&buf[0], uint32(len(buf)))
		if m < 0 {
			return nil, statusError(op, m)
		}
		if int(m) <= len(buf) {
			return buf[:m], nil
		}
		n = m
	}
	return nil, &HostError{Op: op, Message: "value kept growing while being read", err: ErrUnavailable}
}

// unpackBlock reads a §3.3 result: a block the host allocated through omni_alloc, either
// the data or (E bit set) an error message.
func unpackBlock(op string, packed uint64) ([]byte, error) {
	ptr := uint32(packed >> 32)
	size := uint32(packed & 0x7FFF_FFFF)
	block := takeBlock(ptr, size)
	if packed&errorBit != 0 {
		return nil, messageError(op, string(block))
	}
	return block, nil
}

func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
