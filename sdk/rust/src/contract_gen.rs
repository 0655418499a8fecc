// Generated from sdk/contract/host.json by tests/sdk/contract.py; tests/sdk/test_contract_fakes.py fails when it differs. Do not edit.

//! The host's answers the test host is held to (sdk/contract/host.json).

/// specs/abi.md §4.11's commands with their least and most argument counts (None: no most):
/// anything else is DENIED, as on the host.
pub(crate) const REDIS_COMMANDS: &[(&str, usize, Option<usize>)] = &[
    ("DECR", 1, Some(1)),
    ("DECRBY", 2, Some(2)),
    ("DEL", 1, None),
    ("EXISTS", 1, None),
    ("EXPIRE", 2, Some(2)),
    ("GET", 1, Some(1)),
    ("GETDEL", 1, Some(1)),
    ("HDEL", 2, None),
    ("HEXISTS", 2, Some(2)),
    ("HGET", 2, Some(2)),
    ("HGETALL", 1, Some(1)),
    ("HINCRBY", 3, Some(3)),
    ("HLEN", 1, Some(1)),
    ("HSET", 3, None),
    ("INCR", 1, Some(1)),
    ("INCRBY", 2, Some(2)),
    ("LLEN", 1, Some(1)),
    ("LPOP", 1, Some(2)),
    ("LPUSH", 2, None),
    ("LRANGE", 3, Some(3)),
    ("LTRIM", 3, Some(3)),
    ("MGET", 1, None),
    ("PERSIST", 1, Some(1)),
    ("PEXPIRE", 2, Some(2)),
    ("PTTL", 1, Some(1)),
    ("PUBLISH", 2, Some(2)),
    ("RPOP", 1, Some(2)),
    ("RPUSH", 2, None),
    ("SADD", 2, None),
    ("SCARD", 1, Some(1)),
    ("SET", 2, Some(6)),
    ("SETNX", 2, Some(2)),
    ("SISMEMBER", 2, Some(2)),
    ("SMEMBERS", 1, Some(1)),
    ("SREM", 2, None),
    ("TTL", 1, Some(1)),
];
