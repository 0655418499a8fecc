"""Path patterns (specs/http-routes.md §5.1): literal segments, ``{name}`` for one segment,
``{name...}`` last for the rest; matching a decoded path, and whether two patterns overlap."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

__all__ = ["Pattern", "parse", "split_path"]

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}")


class _PatternError(ValueError):
    """A pattern that cannot be served (the message says why)."""


@dataclass(frozen=True)
class Pattern:
    text: str
    #: Each segment: a literal (str), or a variable's name as ``("name",)``.
    segments: tuple[str | tuple[str], ...]
    #: The name of the trailing ``{name...}``, if any.
    rest: str | None

    def match(self, parts: tuple[str, ...]) -> dict[str, str] | None:
        """The variables when ``parts`` (a path's decoded segments) matches, else None."""
        n = len(self.segments)
        if len(parts) < n if self.rest is not None else len(parts) != n:
            return None
        params: dict[str, str] = {}
        for seg, part in zip(self.segments, parts, strict=False):
            if isinstance(seg, str):
                if seg != part:
                    return None
            elif not part:
                return None
            else:
                params[seg[0]] = part
        if self.rest is not None:
            params[self.rest] = "/".join(parts[n:])
        return params

    def overlaps(self, other: Pattern) -> bool:
        """Whether some path matches both patterns."""
        a, b = self.segments, other.segments
        for x, y in zip(a, b, strict=False):
            if isinstance(x, str) and isinstance(y, str) and x != y:
                return False
            if (isinstance(x, str) and not x) or (isinstance(y, str) and not y):
                # an empty literal (a trailing slash) never matches a variable
                if not (isinstance(x, str) and isinstance(y, str)):
                    return False
        if len(a) == len(b):
            return True
        shorter = self if len(a) < len(b) else other
        if shorter.rest is None:
            return False
        # The rest variable takes the longer pattern's extra segments, which any path may fill
        # (an empty literal there is a trailing slash, which the rest also takes).
        return True

    def example(self, other: Pattern) -> str:
        """A path both patterns match (for the conflict message)."""
        out = []
        longer = self if len(self.segments) >= len(other.segments) else other
        shorter = other if longer is self else self
        for i, seg in enumerate(longer.segments):
            mine = seg if isinstance(seg, str) else None
            theirs = shorter.segments[i] if i < len(shorter.segments) else None
            if mine is None and isinstance(theirs, str):
                mine = theirs
            out.append(mine if mine is not None else "x")
        return "/" + "/".join(out)


def split_path(path: str) -> tuple[str, ...]:
    """``/a/b`` -> ``("a", "b")``; ``/`` -> ``()``; ``/a/`` -> ``("a", "")``."""
    return tuple(path[1:].split("/")) if path != "/" else ()


@cache
def parse(text: str) -> Pattern:
    """The pattern ``text``; :class:`_PatternError` says what is wrong with it."""
    if not text.startswith("/"):
        raise _PatternError(f"a path pattern starts with '/', got {text!r}")
    if "//" in text:
        raise _PatternError(f"a path pattern has no empty segment ('//'), got {text!r}")
    parts = split_path(text)
    segments: list[str | tuple[str]] = []
    rest = None
    seen: set[str] = set()
    for i, part in enumerate(parts):
        m = _VAR.fullmatch(part)
        if m is None:
            if "{" in part or "}" in part:
                raise _PatternError(f"segment {part!r} of {text!r}: a variable is the whole "
                                   "segment, {name} or {name...} ([A-Za-z_][A-Za-z0-9_]*)")
            if part in (".", ".."):
                raise _PatternError(f"a path pattern has no '.' or '..' segment: {text!r}")
            segments.append(part)
            continue
        name = m.group(1)
        if name in seen:
            raise _PatternError(f"variable {{{name}}} appears twice in {text!r}")
        seen.add(name)
        if m.group(2):
            if i != len(parts) - 1:
                raise _PatternError(f"{{{name}...}} takes the rest of the path: it is the last "
                                   f"segment of {text!r}")
            rest = name
        else:
            segments.append((name,))
    return Pattern(text, tuple(segments), rest)
