"""The counter example: `count` adds `by` (default 1) to a counter that starts at config
`start`; `reset` puts it back. The count lives in kv (key `count`, the distance from
`start`), so it survives a restart and every instance in the pool shares it: `kv.incr` is
atomic in the host."""

from typing import Annotated, TypedDict

from omnicore_plugin import config, json_handler, kv, log

KEY = "count"


class CountIn(TypedDict, total=False):
    by: Annotated[int, "how much to add (default 1)"]


class CountOut(TypedDict):
    count: Annotated[int, "the counter's value now"]


def _start() -> int:
    raw = config.get_json("start", 0)
    if type(raw) is not int:
        raise ValueError(f"config 'start' must be an integer, got {raw!r}")
    return raw


@json_handler(title="Count")
def count(request: CountIn | None) -> CountOut:
    """Adds `by` (default 1, may be negative) to the durable counter and returns its new
    value."""
    request = {} if request is None else request
    if not isinstance(request, dict):
        raise ValueError('invalid JSON input: expected an object like {"by": 2}')
    by = request.get("by", 1)
    if type(by) is not int:
        raise ValueError("by must be an integer")
    value = _start() + kv.incr(KEY, by)
    log.debug(f"count += {by} -> {value}")
    return {"count": value}


@json_handler(title="Reset the counter", destructive=True)
def reset(_request: object) -> CountOut:
    """Puts the counter back to its configured start value and returns it."""
    start = _start()
    kv.delete(KEY)
    log.info(f"counter reset to {start}")
    return {"count": start}
