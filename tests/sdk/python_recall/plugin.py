"""A Python plugin using memory, vectors and secrets through a real host
(tests/sdk/test_python_recall.py)."""

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
