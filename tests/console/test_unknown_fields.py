"""Unknown fields in REST request bodies: refused on every JSON body the API takes, naming the
field and the known ones (one rule, in the request layer, from the OpenAPI document)."""

from __future__ import annotations

import re

import httpx

from tests.console.conftest import Host

#: A value for each path parameter that lets the route reach its body.
PATH_VALUES = {"name": "greeter-rust", "capability": "kv", "run_id": "1", "user": "nobody"}
STRAY = "no_such_field"


def _example(schema: dict[str, object], components: dict[str, object]) -> dict[str, object]:
    """A body with the operation's required fields (a body that would otherwise pass) and
    one stray field."""
    if "oneOf" in schema:
        schema = schema["oneOf"][0]  # type: ignore[index]
    if "$ref" in schema:
        schema = components[str(schema["$ref"]).rsplit("/", 1)[-1]]  # type: ignore[assignment]
    values = {"string": "x", "boolean": True, "object": {}, "number": 1, "integer": 1,
              "array": []}
    body: dict[str, object] = {}
    props: dict[str, dict[str, object]] = schema.get("properties", {})  # type: ignore[assignment]
    for key in schema.get("required", []):  # type: ignore[attr-defined]
        prop = props[key]
        body[key] = prop["enum"][0] if "enum" in prop else values.get(  # type: ignore[index]
            str(prop.get("type")), "x")
    body[STRAY] = 1
    return body


def test_every_json_body_of_the_api_refuses_an_unknown_field(host: Host,
                                                              admin: httpx.Client) -> None:
    doc = admin.get("/api/v1/openapi.json").json()
    walked = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
            body = _example(content["application/json"]["schema"],
                            doc["components"]["schemas"])
            r = admin.request(method.upper(), url, json=body)
            assert r.status_code == 422, (method, path, r.status_code, r.text)
            error = r.json()["error"]
            assert error["type"] == "UnknownField", (method, path, error)
            assert f"unknown field '{STRAY}' in the body" in error["message"], error
            walked.append((method, path))
    # The walk saw the bodies it must (a document without them would pass vacuously).
    assert ("post", "/api/v1/jobs") in walked and ("put", "/api/v1/secrets/{name}") in walked
    assert len(walked) >= 12, walked
    # The document says so too: every JSON request object lists its only fields.
    jobs = doc["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert jobs["schema"]["oneOf"][1]["additionalProperties"] is False
    assert doc["components"]["schemas"]["JobRequest"]["additionalProperties"] is False
    assert host.app.secrets.names() == []


def test_a_job_with_input_for_payload_is_refused_not_queued_empty(
        host: Host, admin: httpx.Client) -> None:
    """The reporter's case: ``input`` instead of ``payload`` used to queue an empty job."""
    r = admin.post("/api/v1/jobs", json={"plugin": "greeter-rust", "handler": "greet",
                                         "input": "Ada"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"] == (
        "unknown field 'input' in the body; the known fields are: plugin, handler, payload, "
        "encoding, delay_s, digest")
    r = admin.post("/api/v1/jobs", json={"jobs": [
        {"plugin": "greeter-rust", "handler": "greet", "payload": "Ada"},
        {"plugin": "greeter-rust", "handler": "greet", "input": "Bob"}]})
    assert r.status_code == 422, r.text
    assert "unknown field 'input' in 'jobs'[1]" in r.json()["error"]["message"]
    assert admin.get("/api/v1/jobs").json()["total"] == 0
    # The right field still works.
    r = admin.post("/api/v1/jobs", json={"plugin": "greeter-rust", "handler": "greet",
                                         "payload": "Ada"})
    assert r.status_code == 201, r.text


def test_a_body_the_operation_does_not_take_has_no_fields(host: Host,
                                                           admin: httpx.Client) -> None:
    r = admin.post("/api/v1/workflow-runs/1/cancel", json={"reason": "x"})
    assert r.status_code == 422, r.text
    assert "unknown field 'reason'" in r.json()["error"]["message"]
    # Open objects stay open: a plugin's config takes any key.
    r = admin.put("/api/v1/plugins/greeter-rust/grants/kv", json={"options": {"any": 1}})
    assert r.status_code != 422 or "unknown field" not in r.text, r.text


def test_the_flat_check_agrees_with_the_whole_one_on_every_operation() -> None:
    # json_body checks a flat body (every field a plain value: an invoke's) by its keys
    # alone and sends anything else the whole way: for each operation and bodies with and
    # without a stray, at the top and nested, both say the same (the same refusal, or none).
    from omnicore.console import bodies, openapi
    from omnicore.console.errors import ApiError

    def verdict(check: object) -> str | None:
        try:
            check()  # type: ignore[operator]
        except ApiError as exc:
            return str(exc)
        return None

    flat = 0
    for (method, path), schema in openapi._REQUESTS.items():
        known = bodies._flat_fields(schema)
        resolved = openapi.resolve(schema)
        fields = list(resolved.get("properties", {}))
        for doc in ({}, dict.fromkeys(fields, "x"), {**dict.fromkeys(fields, "x"), STRAY: 1},
                    {f: {STRAY: 1} for f in fields}, {f: [{STRAY: 1}] for f in fields}):
            whole = verdict(lambda d=doc, s=schema: bodies.unknown_fields(d, s))
            if known is None:
                continue
            fast = None if known.issuperset(doc) else whole
            assert fast == whole, (method, path, doc)
        flat += known is not None
    assert flat >= 5  # the invoke among them
    assert bodies._flat_fields(openapi.request_schema("post", "/api/v1/plugins/{name}/invoke")) \
        == {"handler", "input", "encoding"}
