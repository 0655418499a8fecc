"""The counter example: `count` adds `by` (default 1) to a counter that starts at config
`start`; `reset` puts it back. The count lives in kv (key `count`, the distance from
`start`), so it survives a restart and every instance in the pool shares it: `kv.incr` is
atomic in the host."""

from omnicore_plugin import config, json_handler, kv, log

KEY = "count"


def _start() -> int:
    raw = config.get_json("start", 0)
    if type(raw) is not int:
        raise ValueError(f"config 'start' must be an integer, got {raw!r}")
    return raw


@json_handler
def count(request: dict | None) -> dict:
    request = {} if request is None else request
    if not isinstance(request, dict):
        raise ValueError('invalid JSON input: expected an object like {"by": 2}')
    by = request.get("by", 1)
    if type(by) is not int:
        raise ValueError("by must be an integer")
    value = _start() + kv.incr(KEY, by)
    log.debug(f"count += {by} -> {value}")
    return {"count": value}


@json_handler
def reset(_request: object) -> dict:
    start = _start()
    kv.delete(KEY)
    log.info(f"counter reset to {start}")
    return {"count": start}
