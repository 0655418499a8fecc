package omnicore

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
)

// RedisNamespace is the omnicore:redis capability. Use it through the [Redis] value.
type RedisNamespace struct{}

// Redis reaches Redis through the connectors the operator granted (grant
// `redis: {connectors: [cache]}`). Every key and PUBLISH channel is under the plugin's
// prefix: the host prepends the connector's key_prefix (default "omnicore:{plugin}:"), so a
// plugin never names a key outside it.
var Redis RedisNamespace

// Connect is a handle on connector name; nothing is checked before the first command.
func (RedisNamespace) Connect(name string) *RedisConnector { return &RedisConnector{name: name} }

// RedisConnector is a granted Redis connector, by name. Failures are *HostError values
// matching ErrDenied (a command outside specs/abi.md §4.11, connector not granted),
// ErrUnavailable (server down), ErrInvalid (Redis's own error, such as WRONGTYPE) or
// ErrTooLarge (a reply over the connector's caps).
type RedisConnector struct{ name string }

// Name is the connector's name.
func (r *RedisConnector) Name() string { return r.name }

// Command runs any command of §4.11. Arguments are strings, integers or []byte; the reply
// is nil, int64, string (bulk strings that are not UTF-8 too: a Go string holds any bytes),
// []any or map[string]any (HGETALL).
func (r *RedisConnector) Command(cmd string, args ...any) (any, error) {
	op := "redis." + cmd
	encoded := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string, int, int32, int64, uint, uint32, uint64:
			encoded[i] = v
		case []byte:
			encoded[i] = map[string]string{"$bytes": base64.StdEncoding.EncodeToString(v)}
		default:
			return nil, &HostError{Op: op, Status: -3, err: ErrInvalid,
				Message: "INVALID: args[" + strconv.Itoa(i) + "] must be a string, an integer or []byte"}
		}
	}
	req, err := json.Marshal(map[string]any{"cmd": cmd, "args": encoded})
	if err != nil {
		return nil, err
	}
	block, err := unpackBlock(op, hostRedisCommand(r.name, bytesPtr(req), uint32(len(req))))
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(block))
	dec.UseNumber()
	var reply any
	if err := dec.Decode(&reply); err != nil {
		return nil, malformed(op, err)
	}
	return decodeReply(reply)
}

func decodeReply(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		return x.Int64()
	case []any:
		for i, item := range x {
			var err error
			if x[i], err = decodeReply(item); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		if b64, ok := x["$bytes"].(string); ok && len(x) == 1 {
			raw, err := base64.StdEncoding.DecodeString(b64)
			return string(raw), err
		}
		for k, item := range x {
			var err error
			if x[k], err = decodeReply(item); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}

func unexpectedReply(cmd string, reply any) error {
	return &HostError{Op: "redis." + cmd, Message: "unexpected reply", err: errors.New("unexpected reply")}
}

func (r *RedisConnector) integer(cmd string, args ...any) (int64, error) {
	reply, err := r.Command(cmd, args...)
	if err != nil {
		return 0, err
	}
	n, ok := reply.(int64)
	if !ok {
		return 0, unexpectedReply(cmd, reply)
	}
	return n, nil
}

func (r *RedisConnector) bulk(cmd string, args ...any) (string, error) {
	reply, err := r.Command(cmd, args...)
	if err != nil {
		return "", err
	}
	switch v := reply.(type) {
	case nil:
		return "", &HostError{Op: "redis." + cmd, Status: -1, Message: "no such key", err: ErrNotFound}
	case string:
		return v, nil
	}
	return "", unexpectedReply(cmd, reply)
}

func (r *RedisConnector) strings(cmd string, args ...any) ([]string, error) {
	reply, err := r.Command(cmd, args...)
	if err != nil {
		return nil, err
	}
	items, ok := reply.([]any)
	if !ok {
		return nil, unexpectedReply(cmd, reply)
	}
	out := make([]string, len(items))
	for i, item := range items {
		if out[i], ok = item.(string); !ok {
			return nil, unexpectedReply(cmd, reply)
		}
	}
	return out, nil
}

func keyAnd(key string, values []any) []any { return append([]any{key}, values...) }

// Get is GET; an absent key matches [ErrNotFound].
func (r *RedisConnector) Get(key string) (string, error) { return r.bulk("GET", key) }

// Set is SET key value.
func (r *RedisConnector) Set(key string, value any) error {
	_, err := r.Command("SET", key, value)
	return err
}

// SetEX is SET key value EX seconds: the key expires after seconds.
func (r *RedisConnector) SetEX(key string, value any, seconds int64) error {
	_, err := r.Command("SET", key, value, "EX", seconds)
	return err
}

// Incr adds 1 and returns the new value.
func (r *RedisConnector) Incr(key string) (int64, error) { return r.integer("INCR", key) }

// IncrBy adds delta and returns the new value.
func (r *RedisConnector) IncrBy(key string, delta int64) (int64, error) {
	return r.integer("INCRBY", key, delta)
}

// Expire sets the key to expire after seconds; false when the key does not exist.
func (r *RedisConnector) Expire(key string, seconds int64) (bool, error) {
	n, err := r.integer("EXPIRE", key, seconds)
	return n == 1, err
}

// TTL is the seconds left: -1 without expiry, -2 for an absent key.
func (r *RedisConnector) TTL(key string) (int64, error) { return r.integer("TTL", key) }

// Del deletes keys and returns how many existed.
func (r *RedisConnector) Del(keys ...string) (int64, error) {
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	return r.integer("DEL", args...)
}

// HGet is a field of the hash at key; absent matches [ErrNotFound].
func (r *RedisConnector) HGet(key, field string) (string, error) { return r.bulk("HGET", key, field) }

// HSet sets one field and reports whether it is new.
func (r *RedisConnector) HSet(key, field string, value any) (bool, error) {
	n, err := r.integer("HSET", key, field, value)
	return n == 1, err
}

// HGetAll is every field of the hash at key (empty for an absent key).
func (r *RedisConnector) HGetAll(key string) (map[string]string, error) {
	reply, err := r.Command("HGETALL", key)
	if err != nil {
		return nil, err
	}
	fields, ok := reply.(map[string]any)
	if !ok {
		return nil, unexpectedReply("HGETALL", reply)
	}
	out := make(map[string]string, len(fields))
	for k, v := range fields {
		if out[k], ok = v.(string); !ok {
			return nil, unexpectedReply("HGETALL", reply)
		}
	}
	return out, nil
}

// LPush pushes values at the head and returns the list's length.
func (r *RedisConnector) LPush(key string, values ...any) (int64, error) {
	return r.integer("LPUSH", keyAnd(key, values)...)
}

// RPush pushes values at the tail and returns the list's length.
func (r *RedisConnector) RPush(key string, values ...any) (int64, error) {
	return r.integer("RPUSH", keyAnd(key, values)...)
}

// LRange is the elements start..stop, inclusive (0, -1 is the whole list).
func (r *RedisConnector) LRange(key string, start, stop int64) ([]string, error) {
	return r.strings("LRANGE", key, start, stop)
}

// SAdd adds members and returns how many were new.
func (r *RedisConnector) SAdd(key string, members ...any) (int64, error) {
	return r.integer("SADD", keyAnd(key, members)...)
}

// SRem removes members and returns how many were there.
func (r *RedisConnector) SRem(key string, members ...any) (int64, error) {
	return r.integer("SREM", keyAnd(key, members)...)
}

// SMembers is the set's members, in no order.
func (r *RedisConnector) SMembers(key string) ([]string, error) { return r.strings("SMEMBERS", key) }

// Publish sends message on channel (under the plugin's prefix) and returns how many
// subscribers got it.
func (r *RedisConnector) Publish(channel string, message any) (int64, error) {
	return r.integer("PUBLISH", channel, message)
}
