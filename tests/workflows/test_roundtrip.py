"""A draft's data written back into its file's text: comments, key order and style kept."""

from __future__ import annotations

import json

import yaml

from omnicore.workflows.roundtrip import rewrite

TEXT = """\
# Top comment.
format: omniflow/v1
name: flow   # the name
steps:
    # the first step
    - id: one
      uses: plugin:greeter-rust/greet
      with: {name: 'Ada'}   # who
    - id: two             # second
      needs: [one]
      wait: approval
"""


def test_the_same_data_gives_the_same_text_byte_for_byte() -> None:
    assert rewrite(TEXT, yaml.safe_load(TEXT), "flow.yaml") == TEXT


def test_a_changed_value_moves_nothing_else() -> None:
    data = yaml.safe_load(TEXT)
    data["steps"][0]["with"]["name"] = "Grace"
    out = rewrite(TEXT, data, "flow.yaml")
    assert [line for line in out.splitlines() if line not in TEXT.splitlines()] == [
        "      with: {name: 'Grace'} # who"]
    assert yaml.safe_load(out) == data


def test_steps_are_matched_by_id_so_a_moved_step_keeps_its_comment() -> None:
    data = yaml.safe_load(TEXT)
    data["steps"].reverse()
    data["steps"][0].pop("needs")
    data["steps"][1]["needs"] = ["two"]
    data["steps"].append({"id": "three", "uses": "plugin:greeter-rust/greet"})
    del data["name"]
    data["name"] = "flow"   # re-added last: the key keeps its place all the same
    out = rewrite(TEXT, data, "flow.yaml")
    assert yaml.safe_load(out) == data
    assert "- id: two             # second" in out and "# Top comment." in out
    assert out.index("name: flow   # the name") < out.index("steps:")
    assert "    - id: three" in out  # the file's own indentation of lists


def test_a_json_file_is_written_as_json() -> None:
    data = {"format": "omniflow/v1", "name": "j", "steps": [{"id": "a", "wait": "approval"}]}
    assert json.loads(rewrite("{}", data, "j.json")) == data
    assert rewrite("", data, "j.yaml").startswith("format: omniflow/v1\n")


def test_a_file_that_does_not_parse_is_written_anew() -> None:
    data = {"format": "omniflow/v1", "name": "fixed", "steps": [{"id": "a", "wait": "approval"}]}
    assert yaml.safe_load(rewrite("steps: [unclosed\n", data, "fixed.yaml")) == data
