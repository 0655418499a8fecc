"""A wasi:http/proxy component that misuses the host's wasi:http and wasi:io as a hostile
guest would (tests/routes/test_proxy_attacks.py): componentize-py's own bindings, nothing of
omnicore. Its path's last segment picks the misuse."""

import time

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import poll
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

CHUNK = 4096
#: Handles kept from one request to the next (the hoard-global case): module state survives
#: between requests on a reused instance.
HELD: list[Fields] = []


def _unset(headers: list[tuple[str, bytes]] | None = None,
           status: int = 200) -> tuple[OutgoingResponse, OutgoingBody]:
    response = OutgoingResponse(Fields.from_list(headers or []))
    response.set_status_code(status)
    return response, response.body()


def _set(out: ResponseOutparam, headers: list[tuple[str, bytes]] | None = None,
         status: int = 200) -> tuple[OutgoingResponse, OutgoingBody]:
    response, body = _unset(headers, status)
    ResponseOutparam.set(out, Ok(response))
    return response, body


def _answer(out: ResponseOutparam, text: str) -> None:
    _, body = _set(out)
    stream = body.write()
    stream.blocking_write_and_flush(text.encode())
    stream.__exit__(None, None, None)
    OutgoingBody.finish(body, None)


def _drain(stream: object) -> tuple[int, str]:
    total = 0
    try:
        while True:
            total += len(stream.blocking_read(CHUNK))  # type: ignore[attr-defined]
    except Err as e:
        return total, type(e.value).__name__


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        leaf = path.split("?", 1)[0].rsplit("/", 1)[-1]
        if leaf == "sleep":  # said it started, then never answers (the plugin's deadline ends it)
            print("started", flush=True)
            time.sleep(3600)
        if leaf == "hoard-global":  # 1,000 handles a request kept, never dropped
            HELD.extend(Fields() for _ in range(1000))
            _answer(out, f"held {len(HELD)}")
            return
        if leaf.startswith(("status=", "streamed=")):  # a status with a body, maybe streamed
            name, _, code = leaf.partition("=")
            _, body = _set(out, [("x-a", b"1")], int(code))
            stream = body.write()
            if name == "streamed":
                time.sleep(0.3)  # (past the server's STREAM_AFTER_S: the head is sent)
            stream.blocking_write_and_flush(b"a body HTTP says it has not")
            stream.__exit__(None, None, None)
            OutgoingBody.finish(body, None)
            return
        if leaf.startswith("bodies="):  # N responses never set, each body written to
            n, size = (int(x) for x in leaf[7:].split("x"))  # its cap: host memory
            block = b"b" * 65536
            kept = []
            for _ in range(n):
                response = OutgoingResponse(Fields())
                body = response.body()
                stream = body.write()
                for _ in range(size // 65536):
                    stream.blocking_write_and_flush(block)
                kept.append(stream)  # (which holds the buffer)
            _answer(out, f"wrote {n} bodies")
            return
        if leaf == "print-loop":  # the plugin's log flooded until the deadline
            while True:
                print("flood " * 100, flush=True)
        if leaf == "print-huge":  # one 8 MiB line to stdout, then an answer
            print("h" * (8 << 20), flush=True)
            _answer(out, "printed")
            return
        if leaf == "late-read":  # answered whole first, then the body read to its end
            body = request.consume()
            stream = body.stream()
            _answer(out, "answered")
            _drain(stream)
            return
        if leaf == "drop-in":  # the incoming-body dropped before its stream, then read
            body = request.consume()
            stream = body.stream()
            body.__exit__(None, None, None)
            total, end = _drain(stream)
            _answer(out, f"read {total} {end}")
            return
        if leaf == "drop-out":  # the outgoing-body dropped (never finished) before its stream
            _, body = _set(out)
            stream = body.write()
            body.__exit__(None, None, None)
            try:
                stream.blocking_write_and_flush(b"after the body's drop")
            except Err:
                pass
            return
        if leaf == "finish-twice":
            _, body = _set(out)
            stream = body.write()
            stream.blocking_write_and_flush(b"once")
            stream.__exit__(None, None, None)
            OutgoingBody.finish(body, None)
            OutgoingBody.finish(body, None)
            return
        if leaf == "write-after-finish":
            _, body = _set(out)
            stream = body.write()
            stream.blocking_write_and_flush(b"before")
            OutgoingBody.finish(body, None)
            try:
                stream.blocking_write_and_flush(b"AFTER")
            except Err:
                pass
            return
        if leaf == "dropped-pollable":  # a pollable of a stream dropped, then blocked on
            body = request.consume()
            stream = body.stream()
            ready = stream.subscribe()
            stream.__exit__(None, None, None)
            ready.block()
            _answer(out, f"ready {ready.ready()}")
            return
        # The polls: the response is set after them, so a poll that traps is a 500 whole,
        # never a head the host had begun to stream (a loaded host streams a head set more
        # than STREAM_AFTER_S before the call ends) and then cut.
        if leaf == "poll-many":  # one pollable 10,000 times, then 4,000 distinct ones
            response, body = _unset()
            stream = body.write()
            ready = stream.subscribe()
            said = [len(poll.poll([ready] * 10_000))]
            many = [stream.subscribe() for _ in range(4000)]
            said.append(len(poll.poll(many)))
            ResponseOutparam.set(out, Ok(response))
            stream.blocking_write_and_flush(f"ready {said}".encode())
            for p in many:
                p.__exit__(None, None, None)
            ready.__exit__(None, None, None)
            stream.__exit__(None, None, None)
            OutgoingBody.finish(body, None)
            return
        if leaf.startswith("poll="):  # poll=one, poll=same (one twice), poll=two
            response, body = _unset()
            stream = body.write()
            a, b = stream.subscribe(), stream.subscribe()
            which = {"one": [a], "same": [a, a], "two": [a, b]}[leaf[5:]]
            polled = poll.poll(which)
            ResponseOutparam.set(out, Ok(response))
            stream.blocking_write_and_flush(f"ready {polled}".encode())
            a.__exit__(None, None, None)
            b.__exit__(None, None, None)
            stream.__exit__(None, None, None)
            OutgoingBody.finish(body, None)
            return
        if leaf == "splice":  # the request body spliced into the response's as it comes
            _, out_body = _set(out)
            sink = out_body.write()
            body = request.consume()
            stream = body.stream()
            total, end = 0, "?"
            try:
                while True:
                    total += sink.blocking_splice(stream, CHUNK)
            except Err as e:
                end = type(e.value).__name__
            sink.blocking_write_and_flush(f"|{total} {end}".encode())
            sink.__exit__(None, None, None)
            OutgoingBody.finish(out_body, None)
            return
        if leaf.startswith("trailers="):  # trailers a trailer may not carry, or huge ones
            size = int(leaf[9:])
            _, body = _set(out, [("trailer", b"x-big, content-length, x-ok")])
            stream = body.write()
            stream.blocking_write_and_flush(b"body")
            stream.__exit__(None, None, None)
            OutgoingBody.finish(body, Fields.from_list([
                ("content-length", b"1"), ("Transfer-Encoding", b"chunked"),
                ("X-Ok", b"fine"), ("x-big", b"v" * size)]))
            return
        if leaf.startswith("headers="):  # a response with this many headers
            fields = Fields()
            for i in range(int(leaf[8:])):
                fields.append(f"x-h{i}", b"v")
            response = OutgoingResponse(fields)
            body = response.body()
            ResponseOutparam.set(out, Ok(response))
            OutgoingBody.finish(body, None)
            return
        if leaf.startswith("value="):  # a response header of this many bytes
            fields = Fields.from_list([("x-huge", b"v" * int(leaf[6:]))])
            response = OutgoingResponse(fields)
            body = response.body()
            ResponseOutparam.set(out, Ok(response))
            OutgoingBody.finish(body, None)
            return
        if leaf == "bad-head":  # framing and hop-by-hop headers the guest has no say in
            _, body = _set(out, [("content-length", b"1000"), ("transfer-encoding", b"gzip"),
                                 ("connection", b"close"), ("x-fine", b"yes")])
            stream = body.write()
            stream.blocking_write_and_flush(b"short")
            stream.__exit__(None, None, None)
            OutgoingBody.finish(body, None)
            return
        if leaf == "keep-writing":  # answered, then a byte every 10 ms, never finished
            _, body = _set(out)
            stream = body.write()
            while True:
                stream.blocking_write_and_flush(b".")
                time.sleep(0.01)
        if leaf == "trap-mid":  # streamed, then a trap before the end
            _, body = _set(out)
            stream = body.write()
            stream.blocking_write_and_flush(b"part one\n")
            time.sleep(0.5)  # (past the server's STREAM_AFTER_S: the head is sent)
            stream.blocking_write_and_flush(b"part two\n")
            raise RuntimeError("trapped mid-stream on purpose")
        if leaf == "read":  # the body read whole (blocking), its length answered
            body = request.consume()
            total, end = _drain(body.stream())
            _answer(out, f"read {total} {end}")
            return
        _answer(out, f"hostile {path}")
