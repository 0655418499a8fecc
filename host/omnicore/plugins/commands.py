"""A plugin that is a WASI command, run once as ``omnicore exec`` runs it: the ``@exec`` handler.

A command module in the plugins folder loads as a plugin (Extism's shape: its ``_start`` is a
handler that takes nothing). Calling its reserved handler :data:`EXEC` instead runs the module
as a command (``sandbox.command.run_command``): with the arguments and environment of the
call's JSON input, the directories of the plugin's ``fs`` grant, its limits (one deadline,
``timeout_ms``, for the whole run; memory and tables), and its stdout and stderr captured up
to ``limits.max_output_bytes`` each. The answer is JSON::

    {"exit_code": 0, "stdout": "...", "stderr": "...", "truncated": false}

A non-zero exit is an answer, not a failure (it is the program's); a trap, the deadline or a
limit fails the call as any plugin call fails. Every door that calls a plugin has it: a job
(``omnicore jobs enqueue NAME @exec '{"args": [...]}'``, whose result keeps the answer),
``omnicore call``, the REST API's invoke.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from omnicore.errors import HandlerNotFound, InvalidInput
from omnicore.plugins.versions import Entry, Version

if TYPE_CHECKING:
    from omnicore.sandbox.engine import SandboxEngine

# The command runner (sandbox.command, the fs functions) is imported by the first run: the
# plugin host imports this module, and a host that runs no command never needs it.

__all__ = ["EXEC", "is_command", "run_exec"]

#: The reserved handler that runs a command plugin's module as a command.
EXEC = "@exec"


def is_command(module: object) -> bool:
    """Whether ``module`` is a WASI command: a core module exporting ``_start: () -> ()``
    and importing functions from WASI only."""
    from omnicore.sandbox.command import START
    from omnicore.sandbox.module import WASI_MODULE, PluginModule

    return (isinstance(module, PluginModule)
            and any(e.name == START and e.signature == ((), ()) for e in module.exports)
            and all(i.module == WASI_MODULE and i.kind == "func" for i in module.imports))


class _Capped:
    """One captured stream: keeps the first ``cap`` bytes, counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.dropped = 0

    def write(self, data: bytes) -> int:
        room = self.cap - len(self.data)
        self.data += data[:max(room, 0)]
        self.dropped += max(len(data) - max(room, 0), 0)
        return len(data)

    def flush(self) -> None:
        pass


def _spec(name: str, data: bytes) -> tuple[list[str], dict[str, str]]:
    try:
        doc: Any = json.loads(data or b"{}")
    except ValueError as exc:
        raise InvalidInput(f"plugin '{name}' handler '{EXEC}': the input is not JSON ({exc}); "
                           'it is {"args": ["..."], "env": {"K": "v"}}', plugin=name,
                           handler=EXEC) from None
    args, env = (doc.get("args", []), doc.get("env", {})) if isinstance(doc, dict) else (0, 0)
    if not (isinstance(doc, dict) and set(doc) <= {"args", "env"}
            and isinstance(args, list) and all(isinstance(a, str) for a in args)
            and isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        raise InvalidInput(f"plugin '{name}' handler '{EXEC}': the input is "
                           '{"args": ["..."], "env": {"K": "v"}} (strings only)', plugin=name,
                           handler=EXEC)
    return args, env


def run_exec(entry: Entry, version: Version, data: bytes) -> bytes:
    """Run ``version``'s module as a command with the call's input ``data``; the JSON answer.

    HandlerNotFound when the module is no command; InvalidInput for input that is not the
    ``{"args", "env"}`` object; the PluginCallError of a plugin call for a trap, the
    deadline or a limit."""
    from omnicore.sandbox.command import START, Command, CommandModule, run_command
    from omnicore.sandbox.module import WASI_MODULE, PluginModule
    from omnicore.sandbox.wasi_fd import parse_dirs

    name, module = entry.name, version.module
    if not is_command(module):
        raise HandlerNotFound(
            f"plugin '{name}' has no handler '{EXEC}': it is not a WASI command (a module "
            f"exporting {START} and importing from {WASI_MODULE} only)", plugin=name,
            handler=EXEC)
    assert isinstance(module, PluginModule)
    # The engine the module was compiled on (core runtimes keep it; a fuel limit has its own).
    engine: SandboxEngine = getattr(version.runtime, "engine")  # noqa: B009
    args, env = _spec(name, data)
    limits = version.runtime.limits
    settings = entry.settings
    fs = settings.grants.get("fs") if settings is not None else None
    dirs = parse_dirs(fs.get("dirs", []), "grant.fs.dirs") if fs else ()
    out, err = _Capped(limits.max_output_bytes), _Capped(limits.max_output_bytes)
    code = run_command(engine, CommandModule(name, module.wasmtime_module),
                       Command(args=args, env=env, dirs=dirs, limits=limits, program=name),
                       out, err, entry.log)  # type: ignore[arg-type]
    return json.dumps({"exit_code": code,
                       "stdout": out.data.decode("utf-8", "replace"),
                       "stderr": err.data.decode("utf-8", "replace"),
                       "truncated": bool(out.dropped or err.dropped)}).encode()
