// Code generated from sdk/contract/host.json by tests/sdk/contract.py; DO NOT EDIT.
// tests/sdk/test_contract_fakes.py fails when it differs.

//go:build !wasm

package omnicore

// redisCommands is specs/abi.md §4.11's command list with each command's least and most
// argument counts (-1: no most): anything else is DENIED, as on the host.
var redisCommands = map[string][2]int{
	"DECR":      {1, 1},
	"DECRBY":    {2, 2},
	"DEL":       {1, -1},
	"EXISTS":    {1, -1},
	"EXPIRE":    {2, 2},
	"GET":       {1, 1},
	"GETDEL":    {1, 1},
	"HDEL":      {2, -1},
	"HEXISTS":   {2, 2},
	"HGET":      {2, 2},
	"HGETALL":   {1, 1},
	"HINCRBY":   {3, 3},
	"HLEN":      {1, 1},
	"HSET":      {3, -1},
	"INCR":      {1, 1},
	"INCRBY":    {2, 2},
	"LLEN":      {1, 1},
	"LPOP":      {1, 2},
	"LPUSH":     {2, -1},
	"LRANGE":    {3, 3},
	"LTRIM":     {3, 3},
	"MGET":      {1, -1},
	"PERSIST":   {1, 1},
	"PEXPIRE":   {2, 2},
	"PTTL":      {1, 1},
	"PUBLISH":   {2, 2},
	"RPOP":      {1, 2},
	"RPUSH":     {2, -1},
	"SADD":      {2, -1},
	"SCARD":     {1, 1},
	"SET":       {2, 6},
	"SETNX":     {2, 2},
	"SISMEMBER": {2, 2},
	"SMEMBERS":  {1, 1},
	"SREM":      {2, -1},
	"TTL":       {1, 1},
}
