"""Stack traces of bundled JS/TS plugins that point to the author's files, not the bundle.

The runtime evaluates every plugin as ``plugin.js``; once esbuild has bundled a TypeScript
plugin (or its npm packages), ``plugin.js:145`` names a line nobody wrote. :func:`stack_mapper`
turns esbuild's source map into a line table and a few lines of JS appended to the bundle
(appended, so no line moves) that install ``Error.prepareStackTrace`` (QuickJS-ng implements
V8's API): frames in ``plugin.js`` are printed as ``plugin.ts:32`` instead. It is ordinary
top-level code, so it lands in the build-time snapshot and costs nothing per call; it runs
only when an error is created.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["decode_lines", "stack_mapper"]

_B64 = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_LINE_BITS = 20  # original lines up to 1,048,575; the source index sits above them


def _vlq(segment: str) -> list[int]:
    values, value, shift = [], 0, 0
    for char in segment:
        digit = _B64[char]
        value |= (digit & 31) << shift
        if digit & 32:
            shift += 5
            continue
        values.append(-(value >> 1) if value & 1 else value >> 1)
        value, shift = 0, 0
    return values


def decode_lines(mappings: str) -> list[tuple[int, int] | None]:
    """For each generated line, (source index, 1-based original line) of its first mapped
    segment, or None. Source map v3 fields are deltas carried across segments and lines."""
    out: list[tuple[int, int] | None] = []
    source = line = 0
    for generated in mappings.split(";"):
        first = None
        for segment in filter(None, generated.split(",")):
            fields = _vlq(segment)
            if len(fields) >= 4:
                source += fields[1]
                line += fields[2]
                if first is None:
                    first = (source, line + 1)
        out.append(first)
    return out


def stack_mapper(source_map: Path, project: Path) -> str:
    """The JS to append to a bundle so its stack frames name the original files and lines.

    Paths are shown relative to ``project`` (``plugin.ts``, ``node_modules/marked/...``).
    """
    doc = json.loads(source_map.read_text(encoding="utf-8"))
    base = source_map.parent
    sources = [os.path.relpath((base / s).resolve(), project) for s in doc.get("sources", [])]
    table = [0 if entry is None or entry[1] >= 1 << _LINE_BITS
             else (entry[0] << _LINE_BITS) | entry[1]
             for entry in decode_lines(doc.get("mappings", ""))]
    while table and table[-1] == 0:
        table.pop()
    return _SNIPPET.replace("$SOURCES", json.dumps(sources)).replace(
        "$TABLE", json.dumps(table, separators=(",", ":")))


# Prints frames in the runtime's own format ("    at fn (file:line:col)", see
# describe_exception in runtime/omnicore_js.c), mapped lines without a column.
_SNIPPET = """
;(() => {
  const sources = $SOURCES, table = $TABLE;
  Error.prepareStackTrace = (error, sites) => {
    let out = "";
    for (const site of sites) {
      let file = site.getFileName(), line = site.getLineNumber(), col = site.getColumnNumber();
      const mapped = file === "plugin.js" && line ? table[line - 1] : 0;
      if (mapped) {
        file = sources[Math.floor(mapped / 1048576)];
        line = mapped % 1048576;
        col = null;
      }
      const where = site.isNative() ? "native"
        : `${file}${line == null ? "" : `:${line}`}${col == null ? "" : `:${col}`}`;
      out += `    at ${site.getFunctionName() || "<anonymous>"} (${where})\\n`;
    }
    return out;
  };
})();
"""
