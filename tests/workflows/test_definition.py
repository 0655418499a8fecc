"""omniflow/v1 definitions: valid ones compile; invalid ones give every problem with its line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from omnicore.workflows import DefinitionError, parse
from omnicore.workflows.definition import schema
from omnicore.workflows.references import check_references

ROOT = Path(__file__).resolve().parents[2]


def problems(text: str, source: str = "w.yaml") -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse(textwrap.dedent(text), source)
    return [str(p) for p in info.value.problems]


def test_the_spec_schema_is_the_one_the_package_ships() -> None:
    assert json.loads((ROOT / "specs" / "workflow.schema.json").read_text()) == schema()


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "workflows").glob("*.yaml")))
def test_the_example_workflows_are_valid(path: Path) -> None:
    wf = parse(path.read_text(), path.name)
    assert wf.steps and len(wf.version) == 64


def test_yaml_and_its_json_equivalent_are_the_same_version() -> None:
    text = (ROOT / "examples" / "workflows" / "text-report.yaml").read_text()
    as_json = json.dumps(yaml.safe_load(text), indent=1)
    a, b = parse(text, "a.yaml"), parse(as_json, "a.json")
    assert a.version == b.version
    assert a.steps[2].needs == ("stats",)  # inferred from steps.stats in `with`


def test_every_schema_problem_is_listed_with_its_path_and_line() -> None:
    found = problems("""\
        format: omniflow/v1
        name: Bad Name
        steps:
          - id: a
            uses: plugin:nohandler
          - id: b
            uses: plugin:p/h
            wait: approval
          - id: c
            uses: plugin:p/h
            timeout: 5 minutes
            colour: blue
        """)
    assert found == [
        "line 2: name: 'Bad Name': a workflow name is 1-64 lowercase letters, digits, '-' and "
        "'_', starting with a letter or digit",
        "line 5: steps[0].uses: 'plugin:nohandler': write plugin:NAME/HANDLER, connector:NAME "
        "or workflow:NAME",
        "line 6: steps[1]: a step needs exactly one of 'uses' or 'wait'",
        "line 9: steps[2]: unknown key(s) not allowed ('colour' was unexpected)",
        "line 11: steps[2].timeout: '5 minutes' is not a duration like 30, '500ms', '30s', "
        "'5m', '2h', '1d'",
    ]


def test_needs_cycles_unknown_steps_and_duplicate_ids() -> None:
    found = problems("""\
        format: omniflow/v1
        name: w
        steps:
          - {id: a, uses: plugin:p/h, needs: [c]}
          - {id: b, uses: plugin:p/h, needs: [a, nope]}
          - {id: c, uses: plugin:p/h, with: "${{ steps.b.output }}"}
        """)
    assert "line 5: steps[1].needs: unknown step 'nope' (steps: a, b, c)" in found
    assert any("a cycle in needs: a -> c -> b -> a" in p for p in found), found
    found = problems("""        format: omniflow/v1
        name: w
        steps:
          - {id: a, uses: plugin:p/h}
          - {id: a, uses: plugin:p/h}
        """)
    assert found == ["line 5: steps[1].id: step id 'a' is already used by steps[0]"]


def test_expression_errors_name_the_position_and_the_variable() -> None:
    found = problems("""\
        format: omniflow/v1
        name: w
        steps:
          - id: a
            uses: plugin:p/h
            with: {x: "hi ${{ inputs.n + }}", y: "${{ envron.HOME }}"}
            if: "inputs.n > "
        """)
    assert any(p.startswith("line 6: steps[0].with.x: expression syntax error at column")
               for p in found), found
    assert any("unknown name 'envron'" in p and p.startswith("line 6: steps[0].with.y")
               for p in found), found
    assert any(p.startswith("line 7: steps[0].if: expression syntax error") for p in found)


def test_secrets_are_refused_outside_a_connector_steps_headers() -> None:
    found = problems("""\
        format: omniflow/v1
        name: w
        steps:
          - id: a
            uses: plugin:p/h
            with: {token: "${{ secrets.API_TOKEN }}"}
        outputs: {t: "${{ secrets.API_TOKEN }}"}
        """)
    assert any("steps[0].with: secrets may only be used in a connector step's headers" in p
               for p in found), found
    assert any("outputs: secrets may only be used" in p for p in found), found
    ok = parse(textwrap.dedent("""\
        format: omniflow/v1
        name: w
        steps:
          - id: a
            uses: connector:api
            method: POST
            path: /items
            headers: {Authorization: "Bearer ${{ secrets.API_TOKEN }}"}
        """))
    assert ok.steps[0].headers.secrets == {"API_TOKEN"}


def test_triggers_are_checked() -> None:
    found = problems("""\
        format: omniflow/v1
        name: w
        triggers:
          - {cron: "61 * * * *", timezone: Mars/Olympus}
          - {event: "plugin.*.order", filter: "trigger.data.total >"}
          - {webhook: "orders/new", secret: HOOK}
        steps: [{id: a, uses: plugin:p/h}]
        """)
    assert any("triggers[0].timezone: unknown time zone 'Mars/Olympus'" in p for p in found)
    assert any("triggers[0].cron: '61 * * * *' is not a cron expression" in p for p in found)
    assert any(p.startswith("line 5: triggers[1].filter: expression syntax error")
               for p in found), found
    found = problems("""        format: omniflow/v1
        name: w
        triggers: [{webhook: "orders/new"}]
        steps: [{id: a, uses: plugin:p/h}]
        """)
    assert found == ["line 3: triggers[0]: 'secret' is a required property"]


def test_not_yaml_or_not_json_is_one_clear_problem() -> None:
    assert problems("name: [unclosed\n") [0].startswith("line 2: (document): not valid YAML")
    assert problems('{"name": }', "w.json")[0] == "line 1: (document): not valid JSON: " \
                                                  "Expecting value"


def test_references_to_plugins_handlers_connectors_and_workflows() -> None:
    wf = parse(textwrap.dedent("""\
        format: omniflow/v1
        name: w
        steps:
          - {id: a, uses: plugin:greeter/greet}
          - {id: b, uses: plugin:greeter/shout}
          - {id: c, uses: plugin:ghost/x}
          - {id: d, uses: connector:api, path: /x}
          - {id: e, uses: workflow:other}
        """))
    found = [str(p) for p in check_references(
        wf, plugins={"greeter": ["greet"]}, connectors={}, workflows=["w"])]
    assert found == [
        "line 5: steps[1].uses: step 'b': plugin 'greeter' has no handler 'shout' "
        "(handlers: greet)",
        "warning: line 6: steps[2].uses: step 'c' uses plugin 'ghost', which the app does not "
        "have (plugins: greeter); it may be added later or served by another host of the store: "
        "until a host serves it, the step waits queued",
        "line 7: steps[3].uses: unknown connector 'api' (connectors in the app config: none)",
        "line 8: steps[4].uses: unknown workflow 'other'",
    ]
