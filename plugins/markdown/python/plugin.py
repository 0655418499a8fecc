"""Markdown rendering with a real PyPI package, bundled by `omnicore build` (requirements.txt).

    render:   Markdown text in, HTML out (bytes, not JSON)
    headings: Markdown text in, JSON [{"depth": 1, "text": "Title", "id": "title"}] out
"""

import json
import re

import mistune
# mistune imports a plugin named by string when a parser is made, inside a call; the
# component holds only the modules imported while it was built, so import them here.
from mistune.plugins.formatting import strikethrough
from mistune.plugins.table import table
from mistune.plugins.url import url

from omnicore_plugin import config, handler, log

_GFM = [table, strikethrough, url]

_renderers: dict[tuple[bool, bool, bool], mistune.Markdown] = {}


def _options() -> tuple[bool, bool, bool]:
    # Read inside a call: config is the operator's and may change between calls.
    return (config.get_json("gfm", True) is not False,
            config.get_json("breaks", False) is True, config.get_json("html", False) is True)


def _markdown(renderer: str | None = "html") -> mistune.Markdown:
    gfm, breaks, html = _options()
    key = (gfm, breaks, html) if renderer == "html" else (gfm, breaks, None)
    md = _renderers.get(key)  # type: ignore[arg-type]
    if md is None:
        md = mistune.create_markdown(
            escape=not html, hard_wrap=breaks, renderer=renderer,
            plugins=_GFM if gfm else [])
        _renderers[key] = md  # type: ignore[index]
        log.debug(f"mistune ready (gfm={gfm}, breaks={breaks}, html={html})")
    return md


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the input is not UTF-8 text: {exc}") from None


@handler(title="Render Markdown")
def render(data: bytes) -> str:
    """Renders Markdown text (the whole input, not JSON) to HTML."""
    return _markdown()(_text(data))


def _plain(children: list) -> str:
    return "".join(c.get("raw") or _plain(c.get("children") or []) for c in children)


def _slug(text: str) -> str:
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text.lower().strip()))


@handler(title="Markdown headings")
def headings(data: bytes) -> str:
    """Lists the headings of Markdown text (the whole input, not JSON): depth, text and the
    id a renderer gives them."""
    tokens = _markdown(None)(_text(data))
    out = []
    for token in tokens:
        if token["type"] == "heading":
            text = _plain(token.get("children") or [])
            out.append({"depth": token["attrs"]["level"], "text": text, "id": _slug(text)})
    return json.dumps(out, ensure_ascii=False)
