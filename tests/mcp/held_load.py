"""``omnicore mcp`` with one plugin file's load held at a gate: ``python held_load.py FIFO
mcp --app DIR``. Loading a file named ``big.wasm`` (once the folder shows it and marks the
load under way, as for any file) first opens the named pipe ``FIFO`` and reads it to its
end: the test opening its end tells it the load has begun, and closing it lets the load go
on. Everything else is the real command (tests/mcp/test_loading.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from omnicore.plugins.files import PluginFiles

_load_file = PluginFiles.load_file


def _held(self: PluginFiles, path: Path) -> str:
    if path.name == "big.wasm":
        with open(sys.argv[1], "rb") as gate:
            gate.read()
    return _load_file(self, path)


if __name__ == "__main__":
    PluginFiles.load_file = _held  # type: ignore[method-assign]
    from omnicore.cli.main import main

    main(sys.argv[2:], prog_name="omnicore")
