"""JSON Schemas of Python handlers, read from their annotations without running them.

A Python plugin is built into a component without its code running on the build machine
(omnicore.toolchains.python), so its types are read from the syntax tree: the annotation of
a handler's parameter is its input, its return annotation its output, its docstring (first
paragraph) its description, and the decorator's ``title=`` / ``destructive=`` /
``long_running=`` say the rest::

    class AddIn(TypedDict):
        \"\"\"A note to add.\"\"\"
        text: Annotated[str, "the note's text"]
        tag: NotRequired[str]

    @json_handler(destructive=False)
    def add(request: AddIn) -> AddOut:
        \"\"\"Remembers a note and returns its id.\"\"\"

Understood: ``str``, ``int``, ``float``, ``bool``, ``None``, ``bytes``, ``Any``/``object``,
``list[T]``, ``dict[str, T]``, ``T | None``/``Optional[T]``, ``Literal[...]``,
``Annotated[T, "description"]``, and ``TypedDict`` classes (``total=False``,
``NotRequired``, ``Required``) and dataclasses (a field with a default is optional) defined in
the plugin's own sources. Anything else is any JSON (``{}``); a side that is not an object
gets no schema (MCP tools take and give objects).
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["describe"]

_SIMPLE = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
           "None": "null"}


def describe(fn: ast.FunctionDef, classes: dict[str, ast.ClassDef],
             keywords: dict[str, object]) -> dict[str, Any]:
    """The manifest's handler object for ``fn`` (``keywords``: its decorator's constants)."""
    out: dict[str, Any] = {}
    doc = ast.get_docstring(fn)
    if doc:
        out["description"] = " ".join(doc.split("\n\n")[0].split())
    for key in ("title", "description"):
        if isinstance(keywords.get(key), str):
            out[key] = keywords[key]
    for flag in ("destructive", "long_running"):
        if isinstance(keywords.get(flag), bool):
            out[flag] = keywords[flag]
    args = fn.args.posonlyargs + fn.args.args
    reader = _Reader(classes)
    if args and args[0].annotation is not None:
        schema = reader.schema(args[0].annotation)
        # `CountIn | None`: an empty input is None, and a tool's arguments are an object.
        options = [s for s in schema.get("anyOf", ()) if s != {"type": "null"}]
        if list(schema) == ["anyOf"] and len(options) == 1:
            schema = options[0]
        if schema.get("type") == "object":
            out["input_schema"] = schema
    if fn.returns is not None:
        schema = reader.schema(fn.returns)
        if schema.get("type") == "object":
            out["output_schema"] = schema
    return out


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr  # typing.Optional, t.List: the last part decides
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value  # a forward reference "AddIn"
    return None


class _Reader:
    def __init__(self, classes: dict[str, ast.ClassDef]) -> None:
        self.classes = classes
        self.seen: set[str] = set()

    def schema(self, node: ast.expr) -> dict[str, Any]:
        if isinstance(node, ast.Constant) and node.value is None:
            return {"type": "null"}
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return {}
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self._union([node.left, node.right])
        if isinstance(node, ast.Subscript):
            return self._generic(node)
        name = _name(node)
        if name in _SIMPLE:
            return {"type": _SIMPLE[name]}
        if name == "bytes":
            return {"type": "string", "contentEncoding": "base64"}
        if name in ("list", "List", "tuple", "Sequence"):
            return {"type": "array"}
        if name in ("dict", "Dict", "Mapping"):
            return {"type": "object"}
        if name is not None and name in self.classes:
            return self._class(self.classes[name])
        return {}

    def _union(self, members: list[ast.expr]) -> dict[str, Any]:
        flat: list[dict[str, Any]] = []
        for m in members:
            s = self.schema(m)
            flat += s["anyOf"] if list(s) == ["anyOf"] else [s]
        if {} in flat:
            return {}
        return flat[0] if len(flat) == 1 else {"anyOf": flat}

    def _generic(self, node: ast.Subscript) -> dict[str, Any]:
        name = _name(node.value)
        args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if name in ("Optional",):
            return self._union([args[0], ast.Constant(None)])
        if name == "Union":
            return self._union(args)
        if name in ("list", "List", "Sequence", "set", "frozenset"):
            return {"type": "array", "items": self.schema(args[0])}
        if name in ("tuple", "Tuple"):
            if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is ...:
                return {"type": "array", "items": self.schema(args[0])}
            items = [self.schema(a) for a in args]
            return {"type": "array", "prefixItems": items, "minItems": len(items),
                    "maxItems": len(items)}
        if name in ("dict", "Dict", "Mapping"):
            return {"type": "object", "additionalProperties": self.schema(args[-1])}
        if name == "Literal":
            values = [a.value for a in args if isinstance(a, ast.Constant)]
            return {"enum": values}
        if name in ("Annotated", "Required", "NotRequired"):
            schema = dict(self.schema(args[0]))
            notes = [a.value for a in args[1:] if isinstance(a, ast.Constant)
                     and isinstance(a.value, str)]
            if notes:
                schema["description"] = " ".join(notes)
            return schema
        return {}

    def _class(self, cls: ast.ClassDef) -> dict[str, Any]:
        if cls.name in self.seen:
            return {}  # a recursive type: anything below the first level
        bases = {_name(b) for b in cls.bases}
        dataclass = any(_name(d.func if isinstance(d, ast.Call) else d) == "dataclass"
                        for d in cls.decorator_list)
        if "TypedDict" not in bases and not dataclass:
            return {}
        total = not any(k.arg == "total" and isinstance(k.value, ast.Constant)
                        and k.value.value is False for k in cls.keywords)
        self.seen.add(cls.name)
        try:
            props: dict[str, Any] = {}
            required: list[str] = []
            for item in cls.body:
                if not isinstance(item, ast.AnnAssign) or not isinstance(item.target, ast.Name):
                    continue
                field = item.target.id
                props[field] = self.schema(item.annotation)
                wrapper = _name(item.annotation.value) \
                    if isinstance(item.annotation, ast.Subscript) else None
                if dataclass:
                    needed = item.value is None
                else:
                    needed = wrapper == "Required" or (total and wrapper != "NotRequired")
                if needed:
                    required.append(field)
        finally:
            self.seen.discard(cls.name)
        schema: dict[str, Any] = {"type": "object"}
        doc = ast.get_docstring(cls)
        if doc and not (dataclass and doc.startswith(cls.name + "(")):
            schema["description"] = " ".join(doc.split("\n\n")[0].split())
        schema["properties"] = props
        if required:
            schema["required"] = required
        return schema
