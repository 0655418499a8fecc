"""One verdict for the CLI and the editor: problems tied to their step, required inputs."""

from __future__ import annotations

import yaml

from omnicore.workflows.entries import WorkflowEntries
from omnicore.workflows.validation import step_of, validate

TEXT = """\
format: omniflow/v1
name: flow
steps:
  - {id: greet, uses: "plugin:greeter/greet", with: {}}
  - {id: sum, uses: "plugin:greeter/sum", needs: [greet], with: {a: 1}}
  - {id: free, uses: "plugin:greeter/sum", with: "${{ inputs.pair }}"}
"""
SCHEMAS = {"greeter": {"greet": {"type": "object", "properties": {"name": {"type": "string"}}},
                       "sum": {"type": "object", "required": ["a", "b"]}}}


def entries() -> WorkflowEntries:
    return WorkflowEntries(lambda: (None, None), lambda wf: None)


def test_a_missing_required_input_is_an_error_on_its_step() -> None:
    verdict = validate(TEXT, "flow.yaml", entries(), plugins={"greeter": ["greet", "sum"]},
                       schemas=SCHEMAS)
    assert not verdict.ok
    found = verdict.as_dict(yaml.safe_load(TEXT))["problems"]
    assert [(p["step"], p["message"]) for p in found] == [
        ("sum", "step 'sum': handler greeter/sum requires input 'b'")]
    assert found[0]["line"] == 5


def test_syntax_and_reference_problems_name_their_step() -> None:
    bad = TEXT.replace("needs: [greet]", "needs: [nope]").replace("with: {}",
                                                                 'with: {name: "${{ 1 + }}"}')
    verdict = validate(bad, "flow.yaml", entries())
    steps = {p["step"] for p in verdict.as_dict(yaml.safe_load(bad))["problems"]}
    assert steps == {"greet", "sum"} and verdict.workflow is None
    missing = validate(TEXT, "flow.yaml", entries(), plugins={"greeter": ["greet"]})
    assert [p.message for p in missing.problems] == [
        "step 'sum': plugin 'greeter' has no handler 'sum' (handlers: greet)",
        "step 'free': plugin 'greeter' has no handler 'sum' (handlers: greet)"]


def test_step_of() -> None:
    doc = {"steps": [{"id": "a"}], "on_failure": [{"id": "b"}]}
    assert step_of(doc, "steps[0].with.x") == "a" and step_of(doc, "on_failure[0]") == "b"
    assert step_of(doc, "steps[3]") is None and step_of(doc, "name") is None
