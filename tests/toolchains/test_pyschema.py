"""Python handlers' schemas read from their annotations, without running the source."""

from __future__ import annotations

from pathlib import Path

from omnicore.toolchains.python import handler_descriptions

SOURCE = '''
from dataclasses import dataclass
from typing import Annotated, Literal, NotRequired, Optional, TypedDict

from omnicore_plugin import handler, json_handler

raise SystemExit("never run")


class AddIn(TypedDict):
    """A note to add.

    More words that stay out of the schema."""
    text: Annotated[str, "the note's text"]
    tag: NotRequired[str]
    kind: Literal["a", "b"]
    scores: dict[str, float]
    parent: "AddIn | None"


@dataclass
class AddOut:
    id: int
    tags: list[str]
    note: Optional[str] = None


@json_handler(title="Add", destructive=True, long_running=True)
def add(request: AddIn | None) -> AddOut:
    """Remembers a note
    and returns its id.

    Details for readers of the code."""


@json_handler(name="listed")
def listing(request: dict) -> list[AddOut]:
    ...


@handler
def raw(data: bytes) -> str:
    ...
'''


def test_annotations_docstrings_and_decorators_describe_handlers(tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text(SOURCE)
    described = handler_descriptions(tmp_path)
    assert set(described) == {"add", "listed"}  # raw says nothing: no doc, no object types
    add = described["add"]
    assert add["description"] == "Remembers a note and returns its id."
    assert add["title"] == "Add" and add["destructive"] is True and add["long_running"] is True
    assert add["input_schema"] == {
        "type": "object", "description": "A note to add.",
        "properties": {
            "text": {"type": "string", "description": "the note's text"},
            "tag": {"type": "string"},
            "kind": {"enum": ["a", "b"]},
            "scores": {"type": "object", "additionalProperties": {"type": "number"}},
            "parent": {},  # the class itself, below its first level: anything
        },
        "required": ["text", "kind", "scores", "parent"]}
    assert add["output_schema"] == {
        "type": "object",
        "properties": {"id": {"type": "integer"},
                       "tags": {"type": "array", "items": {"type": "string"}},
                       "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
        "required": ["id", "tags"]}
    # A bare dict is an object of anything; a list is no object: no output schema.
    assert described["listed"] == {"input_schema": {"type": "object"}}
