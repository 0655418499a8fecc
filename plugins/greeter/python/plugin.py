"""The greeter, as every SDK writes it: {"name": "Ada"} -> {"message": "Hello, Ada!"}."""

import json

from omnicore_plugin import config, handler, log


@handler(title="Greet")
def greet(data: bytes) -> str:
    """Greets someone by name with the configured greeting."""
    try:
        request = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"invalid JSON input: {exc}") from None
    if not isinstance(request, dict):
        raise ValueError('invalid JSON input: expected an object like {"name": "Ada"}')
    name = request.get("name", "world")
    if not isinstance(name, str):
        raise ValueError("name must be a string")
    if name == "":
        raise ValueError("name must not be empty")
    greeting = config.get("greeting", "Hello")
    log.info(f"greeting {name}")
    return json.dumps({"message": f"{greeting}, {name}!"}, ensure_ascii=False)
