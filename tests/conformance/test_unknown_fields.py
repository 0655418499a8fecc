"""One rule for a field of a handler's JSON input that the handler does not know (specs/abi.md
§2.7): ignored, in every SDK and every example, as the greeter table's "extra fields ignored"
case holds for the nine greeters. Here the twins that once disagreed (the Rust examples refused
with serde's ``deny_unknown_fields`` while their C, JS and other twins accepted): each answers
an input carrying a field from a newer caller as it answers the input without it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp

ROOT = Path(__file__).resolve().parents[2]
#: What the twins use between them.
GRANTS: dict[str, Any] = {"config": {}, "kv": {}, "events": {}, "tasks": {}, "memory": {},
                          "vectors": {}}
#: The field no handler knows: what a caller one version ahead may send.
STRAY = {"from_a_newer_caller": {"x": [1]}}
#: (example, its languages, handler, an input it knows). stock (C and Rust, the same rule)
#: needs a database server: tests/test_stock.py and tests/capabilities/test_sql_mysql.py.
TWINS = [
    ("counter", ["rust", "go", "c", "python", "zig", "as", "ruby", "kotlin", "ts"], "count",
     {"by": 2}),
    ("notes", ["rust", "js"], "embed", {"text": "recipes for soup"}),
    ("digest", ["rust", "js"], "note", {"text": "hello"}),
]
CASES = [(example, lang, handler, known) for example, langs, handler, known in TWINS
         for lang in langs]


def _source_languages() -> dict[str, set[str]]:
    return {example: {p.name for p in (ROOT / "plugins" / example).iterdir() if p.is_dir()}
            for example, *_ in TWINS}


def test_every_twin_is_in_the_table() -> None:
    # A language added to one of these examples joins the table, or this fails.
    listed = {example: set(langs) for example, langs, *_ in TWINS}
    assert _source_languages() == listed


@pytest.mark.parametrize(("example", "lang", "handler", "known"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_field_the_handler_does_not_know_is_ignored(
        make_app: Callable[..., OmniApp], example_wasm: Callable[[str, str], Path],
        example: str, lang: str, handler: str, known: dict[str, Any]) -> None:
    path = example_wasm(example, lang)
    answers = []
    for n, data in enumerate((known, {**known, **STRAY})):
        # Each input on a fresh app: the same starting point (the counter's kv, ...).
        app = make_app(f"twin-{n}", builtin_extensions=None,
                       overrides={"sandbox": {"watch": False}})
        app.start()
        name = app.plugins.load(path, grants=GRANTS).name
        answers.append(app.plugins.call_json(name, handler, data))
        app.stop(grace=0)
    assert answers[0] == answers[1]
