"""A wasi:http/proxy component written as componentize-py's bindings have it, nothing of
omnicore in it: the host serves it as any proxy host would. Its path picks what it does."""

import time

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import outgoing_handler
from wit_world.imports.types import (
    Fields,
    IncomingBody,
    IncomingRequest,
    Method_Other,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    ResponseOutparam,
    Scheme_Http,
)

CHUNK = 4096


def _read_all(request: IncomingRequest) -> bytes:
    body = request.consume()
    stream = body.stream()
    out = b""
    try:
        while True:
            out += stream.blocking_read(CHUNK)
    except Exception:  # the stream's end: stream-error.closed
        pass
    stream.__exit__(None, None, None)
    body.__exit__(None, None, None)
    return out


def _answer(out: ResponseOutparam, status: int, headers: list[tuple[str, bytes]],
            chunks: list[bytes], set_first: bool = True) -> None:
    response = OutgoingResponse(Fields.from_list(headers))
    response.set_status_code(status)
    body = response.body()
    if set_first:  # (else the body is written first, then the response set: allowed too)
        ResponseOutparam.set(out, Ok(response))
    stream = body.write()
    try:
        for chunk in chunks:
            stream.blocking_write_and_flush(chunk)
    except Err:  # closed: over the host's cap
        pass
    stream.__exit__(None, None, None)
    if not set_first:
        ResponseOutparam.set(out, Ok(response))
    OutgoingBody.finish(body, None)


def _read_all_body(response: object) -> str:
    body = response.consume()  # type: ignore[attr-defined]
    stream = body.stream()
    out = b""
    try:
        while True:
            out += stream.blocking_read(CHUNK)
    except Exception:
        pass
    return out.decode(errors="replace")


def _echo(request: IncomingRequest, response_out: ResponseOutparam, query: str) -> None:
    """Each chunk of the body written back as soon as it is read (through the stream's
    pollable and non-blocking reads), then trailers counting it: x-echoed, announced in the
    head (``?unannounced``: not; ``?no-trailers``: none at the end)."""
    fields = [("x-echo", b"yes")]
    if "unannounced" not in query:
        fields.append(("trailer", b"x-echoed"))
    response = OutgoingResponse(Fields.from_list(fields))
    out_body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    out = out_body.write()
    body = request.consume()
    stream = body.stream()
    ready = stream.subscribe()
    total, end = 0, "closed"
    while True:
        ready.block()
        try:
            data = stream.read(CHUNK)
        except Err as e:
            end = type(e.value).__name__
            break
        total += len(data)
        if data:
            out.blocking_write_and_flush(data)
    ready.__exit__(None, None, None)
    stream.__exit__(None, None, None)
    body.__exit__(None, None, None)
    out.blocking_write_and_flush(f"|{end}".encode())
    out.__exit__(None, None, None)
    OutgoingBody.finish(out_body, None if "no-trailers" in query else
                        Fields.from_list([("x-echoed", str(total).encode())]))


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = request.method()
        name = method.value if isinstance(method, Method_Other) else \
            type(method).__name__.removeprefix("Method_").upper()
        path = request.path_with_query() or "/"
        seen = {k: v.decode() for k, v in request.headers().entries()}
        leaf = path.split("?", 1)[0].rsplit("/", 1)[-1]
        if leaf == "never":
            return  # the response is never set
        if leaf == "trap":
            raise RuntimeError("the app failed on purpose")
        if leaf == "sleep":  # blocks on a clock's pollable (a host call) for an hour
            time.sleep(3600)
        if leaf == "spin":
            while True:
                pass
        if leaf == "hoard":  # host objects held until the deadline: handles
            held = []
            while True:
                held.append(Fields())
        if leaf == "headers":  # one host object grown until the deadline: header bytes
            grown = Fields()
            while True:
                grown.append("x-grow", b"v" * 1024)
        if leaf == "fetch":  # an outgoing request: the host refuses it
            out = OutgoingRequest(Fields())
            out.set_authority("example.com")
            out.set_path_with_query("/steal")
            try:
                outgoing_handler.handle(out, None)
                said = "sent"
            except Err as e:
                said = f"refused: {type(e.value).__name__}"
            _answer(response_out, 200, [], [said.encode()])
            return
        if leaf == "stream":  # the head and a first chunk, then no end
            response = OutgoingResponse(Fields.from_list([("x-streamed", b"yes")]))
            body = response.body()
            ResponseOutparam.set(response_out, Ok(response))
            stream = body.write()
            stream.blocking_write_and_flush(b"first\n")
            while True:
                pass
        if leaf.startswith("slow="):  # chunks with work between them, then the end
            n = int(leaf[5:])
            chunks = []
            for i in range(n):
                for _ in range(200_000):
                    pass
                chunks.append(f"chunk {i}\n".encode())
                if i == 0:
                    response = OutgoingResponse(Fields())
                    body = response.body()
                    ResponseOutparam.set(response_out, Ok(response))
                    stream = body.write()
                stream.blocking_write_and_flush(chunks[-1])
            stream.__exit__(None, None, None)
            OutgoingBody.finish(body, None)
            return
        if leaf == "get":  # GET the URL in the query, answer what came back
            target = path.split("?url=", 1)[1]
            authority, _, rest = target.removeprefix("http://").partition("/")
            out = OutgoingRequest(Fields.from_list([("x-from", b"proxy")]))
            out.set_scheme(Scheme_Http())
            out.set_authority(authority)
            out.set_path_with_query("/" + rest)
            try:
                future = outgoing_handler.handle(out, None)
                inner = future.get().value  # some(ok(...)): ok(response) or err(code)
                if isinstance(inner, Err):
                    said = f"failed: {type(inner.value).__name__}"
                else:
                    said = f"upstream {inner.value.status()}: {_read_all_body(inner.value)}"
            except Err as e:
                said = f"refused: {type(e.value).__name__}"
            _answer(response_out, 200, [], [said.encode()])
            return
        if leaf == "echo":  # the response set at once, each chunk echoed as it is read
            _echo(request, response_out, path.partition("?")[2])
            return
        if leaf == "ignore":  # the body is never read
            _answer(response_out, 200, [], [b"ignored"])
            return
        if leaf == "finish":  # the body read to its end, then its (request) trailers
            body = request.consume()
            trailers = IncomingBody.finish(body)
            ready = trailers.subscribe()
            ready.block()
            ready.__exit__(None, None, None)
            got = trailers.get()  # some(ok(ok(option<trailers>)))
            if got is None:
                said = "pending"
            elif isinstance(got, Err):  # a second get
                said = "taken"
            elif isinstance(got.value, Err):  # the trailers' error-code
                said = f"error {type(got.value.value).__name__}"
            elif got.value.value is None:
                said = "none"
            else:  # each field, in order
                said = "some " + "; ".join(f"{k}={v.decode(errors='replace')}"
                                           for k, v in got.value.value.entries())
            again = trailers.get()  # taken already: some(err)
            if got is not None and not isinstance(again, Err):
                said += f"; a second get: {again!r}"
            _answer(response_out, 200, [], [f"request trailers: {said}".encode()])
            return
        if leaf == "trailers":  # a body, then trailers (one a trailer may not carry)
            response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
            body = response.body()
            ResponseOutparam.set(response_out, Ok(response))
            stream = body.write()
            stream.blocking_write_and_flush(b"with trailers")
            stream.__exit__(None, None, None)
            OutgoingBody.finish(body, Fields.from_list([("x-checksum", b"abc123"),
                                                        ("content-length", b"999")]))
            return
        if leaf.startswith("big="):
            n = int(leaf[4:])
            _answer(response_out, 200, [], [b"x" * CHUNK] * (n // CHUNK), set_first=False)
            return
        body = _read_all(request)
        text = (f"hello {name} {path} {len(body)} bytes; "
                f"x-test={seen.get('x-test', '-')}; body={body.decode(errors='replace')}")
        _answer(response_out, 201 if body else 200,
                [("content-type", b"text/plain"), ("x-app", b"proxy-hello")],
                [text.encode()])
