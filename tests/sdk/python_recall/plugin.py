"""A Python plugin using memory, vectors and secrets through a real host, and WASI's
sockets and filesystem without a grant (tests/sdk/test_python_recall.py)."""

import socket

from omnicore_plugin import HostError, json_handler, memory, secrets, vectors


def _code(call):
    try:
        return {"ok": call()}
    except HostError as exc:
        return {"error": exc.code, "detail": exc.detail}


@json_handler
def note(request):
    return _code(lambda: memory.remember(request["text"], tier=request.get("tier", "long"),
                                         metadata=request.get("metadata")))


@json_handler
def recall(request):
    return _code(lambda: [
        {"id": m.id, "tier": m.tier, "text": m.text, "metadata": m.metadata}
        for m in memory.recall(request["query"], tiers=request.get("tiers", memory.TIERS),
                               limit=request.get("limit", 10))])


@json_handler
def forget(memory_id):
    return _code(lambda: memory.forget(memory_id))


@json_handler
def put(request):
    return _code(lambda: vectors.upsert(request["collection"], request["id"],
                                        request["vector"], request.get("metadata")))


@json_handler
def nearest(request):
    return _code(lambda: [
        {"id": m.id, "score": m.score, "metadata": m.metadata}
        for m in vectors.search(request["collection"], request["vector"],
                                request.get("k", 10), request.get("filter"))])


@json_handler
def drop(request):
    return _code(lambda: vectors.delete(request["collection"], request["id"]))


@json_handler
def secret(name):
    return _code(lambda: secrets.get_text(name))


# WASI interfaces the toolchain imports whether used or not (specs/components.md "WASI"):
# without a grant each use answers WASI's own refusal, which CPython raises as OSError.

@json_handler
def dial(port):
    # Bytes for the host: a str would go through the idna codec, which the build leaves out.
    try:
        with socket.socket() as sock:
            sock.settimeout(5)
            sock.connect((b"127.0.0.1", port))
        return {"connected": True}
    except OSError as exc:
        return {"error": type(exc).__name__, "errno": exc.errno}


@json_handler
def lookup(name):
    try:
        return {"addresses": [a[4][0] for a in socket.getaddrinfo(name.encode(), 80)]}
    except OSError as exc:
        return {"error": type(exc).__name__}


@json_handler
def read(path):
    try:
        with open(path, "rb") as f:
            return {"bytes": len(f.read())}
    except OSError as exc:
        return {"error": type(exc).__name__}
