"""The one door every YAML the product reads goes through: a key given twice is refused.

PyYAML's ``safe_load`` keeps the last of two equal keys of a mapping and drops the first
without a word: a second top-level ``plugins:`` appended to ``omnicore.yaml`` emptied every
grant above it. :class:`StrictLoader` refuses the document instead, naming the key, the file
and both lines. Merge keys (``<<: *defaults``) still work as YAML means them: a key the
mapping states itself overrides one it merges in; only a key the mapping states twice is
refused.

Every reader (the app's config, sidecars, workflow definitions, the CLI's files) calls
:func:`load` or :func:`compose` here; ``tests/config/test_yaml_strict.py`` fails when a module
elsewhere calls PyYAML's loaders itself. Writing YAML (``yaml.safe_dump``) is not a door.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import yaml
from yaml.constructor import ConstructorError

__all__ = ["DuplicateKeyError", "StrictLoader", "compose", "load", "load_all"]

_MERGE = "tag:yaml.org,2002:merge"


class DuplicateKeyError(ConstructorError):
    """A mapping states one key twice: ``problem`` names the key, both lines and the file."""

    def __init__(self, key: Any, first: yaml.Mark, again: yaml.Mark) -> None:
        self.key, self.source = key, again.name
        self.first_line, self.line = first.line + 1, again.line + 1
        super().__init__(
            None, None,
            f"duplicate key {key!r} in {self.source}: on line {self.first_line} and again on "
            f"line {self.line} (YAML would keep only the last and drop the first: merge them "
            f"into one)", again)


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing a key stated twice in a mapping (``DuplicateKeyError``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Hashable, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue  # `<<`: merged keys may be overridden, that is what it is for
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):
                    continue  # the base class refuses it, with its own message
                if key in seen:
                    raise DuplicateKeyError(key, seen[key], key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _loader(text: str, source: str) -> StrictLoader:
    loader = StrictLoader(text)
    loader.name = source  # every mark (and so every message) names the file, not "<unicode string>"
    return loader


def load(text: str, source: str = "<yaml>") -> Any:
    """The one document of ``text`` (None when empty); ``source`` names it in errors.
    Raises ``yaml.YAMLError`` (:class:`DuplicateKeyError` for a key stated twice)."""
    loader = _loader(text, source)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_all(text: str, source: str = "<yaml>") -> Iterator[Any]:
    """Each document of a multi-document ``text`` (``---`` between them), as :func:`load`."""
    loader = _loader(text, source)
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            yield loader.get_data()
    finally:
        loader.dispose()


def compose(text: str, source: str = "<yaml>") -> yaml.Node | None:
    """The node tree of ``text`` (for line numbers), None when empty; no duplicate check:
    :func:`load` the same text for that."""
    loader = _loader(text, source)
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()
