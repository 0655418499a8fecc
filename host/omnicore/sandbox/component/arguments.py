"""The JSON arguments of a component export's call: parsed, matched to its parameters and
checked against their WIT types before the guest runs (specs/components.md)."""

from __future__ import annotations

import json
from typing import Any

from omnicore.core import jsoncodec
from omnicore.errors import InvalidInput
from omnicore.sandbox.component.schema import arguments_list
from omnicore.sandbox.component.values import WrongValue
from omnicore.sandbox.component.world import Function
from omnicore.sandbox.limits import Limits

__all__ = ["parse_arguments"]


def _wants(fn: Function) -> str:
    """``fn``'s parameters as an error names them (written only when one is raised)."""
    return ", ".join(f"{p}: {c.wit}" for p, c in fn.params)


def _who(plugin: str, fn: Function) -> str:
    """The call as a refusal names it (made only then: a call's hot path runs past here)."""
    return f"plugin {plugin!r} export {fn.name!r}"


def parse_arguments(plugin: str, fn: Function, data: bytes, limits: Limits) -> list[Any]:
    """The arguments of a call of ``fn`` with ``data`` (a JSON array, or an object keyed by
    parameter names), each checked against its WIT type; InvalidInput or InputTooLarge
    before anything runs."""
    if fn.unsupported is not None:
        raise InvalidInput(f"{_who(plugin, fn)} cannot be called with JSON: its signature uses "
                           f"{fn.unsupported}, which omnicore does not support",
                           plugin=plugin, handler=fn.name)
    if len(data) > limits.max_input_bytes:
        raise limits.input_too_large(len(data), _who(plugin, fn), plugin, fn.name)
    try:
        args = jsoncodec.loads(data) if data.strip() else []
    except RecursionError:  # json's parser recurses: 100,000 brackets end here
        raise InvalidInput(f"{_who(plugin, fn)}: the input nests too deeply to be arguments of "
                           f"[{_wants(fn)}]", plugin=plugin, handler=fn.name) from None
    except ValueError as exc:
        raise InvalidInput(f"{_who(plugin, fn)}: the input is not JSON ({exc}); send a JSON "
                           f"array of the arguments [{_wants(fn)}]", plugin=plugin,
                           handler=fn.name) from None
    if isinstance(args, dict):
        # An object keyed by the parameter names (what an MCP tool and the console's
        # form send: specs/components.md) is the same call.
        try:
            args = arguments_list(fn.params, args)
        except ValueError as exc:
            raise InvalidInput(f"{_who(plugin, fn)}: {exc}; nothing was called", plugin=plugin,
                               handler=fn.name) from None
    if not isinstance(args, list) or len(args) != len(fn.params):
        raise InvalidInput(f"{_who(plugin, fn)} takes {len(fn.params)} argument(s) "
                           f"[{_wants(fn)}] as a JSON array, got {json.dumps(args)[:200]}",
                           plugin=plugin, handler=fn.name)
    try:
        for (pname, codec), value in zip(fn.params, args, strict=True):
            codec.check(value, pname)
    except WrongValue as exc:
        raise InvalidInput(f"{_who(plugin, fn)}: argument {exc}; nothing was called",
                           plugin=plugin, handler=fn.name) from None
    return args
