package omnicore

import (
	"encoding/binary"
	"encoding/json"
)

// KVNamespace is the omnicore:kv capability. Use it through the [KV] value.
type KVNamespace struct{}

// KV is the plugin's durable key-value store. Keys are UTF-8, 1 to 512 bytes.
var KV KVNamespace

// Get returns the value stored at key; an absent key matches [ErrNotFound].
func (KVNamespace) Get(key string) ([]byte, error) {
	return readBuffered("kv.get", func(out *byte, capacity uint32) int32 {
		return hostKVGet(key, out, capacity)
	})
}

// Set stores value at key. Over the grant's quota the error matches [ErrQuota]; a value
// over max_value_bytes matches [ErrTooLarge].
func (KVNamespace) Set(key string, value []byte) error {
	status := hostKVSet(key, bytesPtr(value), uint32(len(value)))
	changed(kvState)
	if status < 0 {
		return statusError("kv.set", status)
	}
	return nil
}

// Delete removes key and reports whether it existed.
func (KVNamespace) Delete(key string) (bool, error) {
	status := hostKVDelete(key)
	changed(kvState)
	if status < 0 {
		return false, statusError("kv.delete", status)
	}
	return status == 1, nil
}

// Incr atomically adds delta to the integer at key (absent counts as 0) and returns the
// new value. A value that is not an integer matches [ErrInvalid].
func (KVNamespace) Incr(key string, delta int64) (int64, error) {
	out := new([8]byte)
	status := hostKVIncr(key, delta, out)
	changed(kvState)
	if status < 0 {
		return 0, statusError("kv.incr", status)
	}
	return int64(binary.LittleEndian.Uint64(out[:])), nil
}

// List returns the keys starting with prefix, sorted (at most 1,000).
func (KVNamespace) List(prefix string) ([]string, error) {
	raw, err := readBuffered("kv.list", func(out *byte, capacity uint32) int32 {
		return hostKVList(prefix, out, capacity)
	})
	if err != nil {
		return nil, err
	}
	var keys []string
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, malformed("kv.list", err)
	}
	return keys, nil
}
