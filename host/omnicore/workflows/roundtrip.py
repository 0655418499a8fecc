"""A definition's new data written back into its old text, keeping what a person wrote.

The file is the source of truth, and people write comments in it. :func:`rewrite` loads the
old text with ruamel.yaml's round-trip loader (comments, key order, quoting and flow style
are kept on its nodes), changes the nodes into the new data in place — a step is matched by
its ``id``, not its position, so a moved step keeps its comments — and dumps it. Data equal
to the old text's gives the old text back byte for byte. A ``.json`` file is written as
indented JSON (JSON has no comments to keep).
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

__all__ = ["rewrite"]

#: A key line followed by a block sequence item: how far the file indents its ``- ``.
_SEQUENCE = re.compile(r"^( *)[^\s#-][^\n]*:[ \t]*\n(?:[ \t]*#[^\n]*\n)*( *)- ", re.MULTILINE)


def _yaml(text: str) -> YAML:
    yaml = YAML()
    # ruamel's default, said here: a key stated twice is refused (omnicore.yamlfile's rule),
    # so an old text holding one is written anew from the checked draft, not merged into.
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True
    yaml.width = 4096
    found = _SEQUENCE.search(text)
    offset = len(found[2]) - len(found[1]) if found else 2
    yaml.indent(mapping=2, sequence=offset + 2, offset=offset)
    return yaml


def rewrite(text: str, data: Any, source: str) -> str:
    """``text`` changed to hold ``data``; ``source``'s suffix says YAML or JSON."""
    if source.endswith(".json"):
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    yaml = _yaml(text)
    try:
        old = yaml.load(text) if text.strip() else None
    except YAMLError:
        old = None  # a file that does not parse is written anew (its text stays in the history)
    if old is not None and _plain(old) == data:
        return text
    out = io.StringIO()
    yaml.dump(_merge(old, data), out)
    return out.getvalue()


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _merge(old: Any, new: Any) -> Any:
    """``new``, reusing ``old``'s nodes (and so their comments and style) where they hold."""
    if isinstance(old, CommentedMap) and isinstance(new, dict):
        for key in [k for k in old if k not in new]:
            del old[key]
        for key, value in new.items():
            old[key] = _merge(old[key], value) if key in old else value
        return old
    if isinstance(old, CommentedSeq) and isinstance(new, list):
        by_id = {item.get("id"): item for item in old
                 if isinstance(item, CommentedMap) and isinstance(item.get("id"), str)}
        items = []
        for i, value in enumerate(new):
            match = by_id.get(value.get("id")) if isinstance(value, dict) else None
            if match is None and i < len(old) and not by_id:
                match = old[i]
            items.append(_merge(match, value) if match is not None else value)
        old[:] = items
        return old
    if type(old) is type(new) and old == new:
        return old
    if isinstance(old, str) and isinstance(new, str) and old == new:
        return old  # a quoted or folded scalar keeps its style
    return new
