"""A Python plugin exercising the SDK through a real host (tests/sdk/test_python.py)."""

import json

from omnicore_plugin import HostError, config, events, handler, http, json_handler, kv, log, tasks


@handler
def greet(name: bytes) -> str:
    log.info("greeting " + name.decode())
    return "Hello, " + name.decode() + "!"


@handler
def count(_: bytes) -> str:
    return str(kv.incr("count"))


@json_handler
def store(request):
    # Every kv call, and the error code of a refused one.
    try:
        if "value" in request:
            kv.set(request["key"], request["value"])
        got = kv.get(request["key"])
        return {"value": None if got is None else got.decode(), "keys": kv.list("")}
    except HostError as exc:
        return {"error": exc.code}


@json_handler
def forget(key):
    return kv.delete(key)


@handler(name="setting")
def read_setting(key: bytes):
    return config.get(key.decode(), "(absent)")


@json_handler
def settings(_):
    return {"all": config.get_json(""), "level": log.enabled("debug")}


@handler
def fail(_: bytes) -> bytes:
    raise ValueError("no such thing")


@handler
def spin(_: bytes) -> bytes:
    while True:
        pass


@handler
def hog(_: bytes) -> bytes:
    # Grows until the memory limit stops it.
    chunks = []
    while True:
        chunks.append(bytearray(1 << 20))


@handler
def hog_once(_: bytes) -> bytes:
    # One allocation beyond the limit, the sibling of hog's many small ones.
    return bytes(bytearray(1 << 30))[:1]


@handler
def noisy(_: bytes) -> bytes:
    print("to stdout")
    log.warn("careful")
    return json.dumps(log.enabled("trace")).encode()


@json_handler
def later(request):
    # tasks: enqueue, cancel, and the codes of refusals.
    try:
        task = tasks.enqueue(request["handler"], b"from a task", request.get("delay_ms", 60000))
    except HostError as exc:
        return {"error": exc.code}
    if request.get("keep"):
        return {"id": task}
    return {"id": task, "cancelled": tasks.cancel(task), "again": tasks.cancel(task)}


@json_handler
def announce(topic):
    try:
        events.publish_json(topic, {"from": "python"})
    except HostError as exc:
        return {"error": exc.code}
    return {"published": topic}


@json_handler
def fetch(request):
    # http: the answer, or the code and reason of a refusal.
    try:
        resp = http.request(request.get("method", "GET"), request["url"],
                            body=request.get("body", ""), headers={"x-probe": "1"})
    except HostError as exc:
        return {"error": exc.code, "detail": exc.detail}
    return {"status": resp.status, "type": resp.headers.get("content-type"), "body": resp.text}
