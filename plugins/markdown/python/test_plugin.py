"""Tests of markdown-python's handlers, run natively: `omnicore test .` (pytest)."""

import json

import plugin  # noqa: F401 - defines the handlers
from omnicore_plugin.testing import TestHost


def test_render_turns_markdown_into_html():
    with TestHost() as host:
        html = host.call("render", "# Title\n\nSome *text* and ~~old~~.").decode()
    assert "<h1>Title</h1>" in html and "<em>text</em>" in html and "<del>old</del>" in html


def test_raw_html_is_escaped_unless_the_operator_allows_it():
    with TestHost() as host:
        assert "&lt;script&gt;" in host.call("render", "<script>x</script>").decode()
    with TestHost(config={"html": True}) as host:
        assert "<script>x</script>" in host.call("render", "<script>x</script>").decode()


def test_headings_are_listed_with_depth_and_id():
    with TestHost() as host:
        found = json.loads(host.call("headings", "# Hello World\n\n## Part *two*\n"))
    assert found == [{"depth": 1, "text": "Hello World", "id": "hello-world"},
                     {"depth": 2, "text": "Part two", "id": "part-two"}]


def test_input_that_is_not_utf8_is_refused():
    with TestHost() as host:
        try:
            host.call("render", b"\xff\xfe")
        except Exception as exc:  # the test host raises what the handler raised
            assert "not UTF-8" in str(exc)
        else:
            raise AssertionError("bad input was accepted")
