"""The console's HTTP/1.1 answer heads (omnicore/console/http1.py ``checked_headers``): every
field held to h11's rules as h11 holds it, but matched once, not on every answer (issue 65,
deliverable 6: the console's security headers and a route's sandbox policy were some 28k
instructions of regular expression a request)."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import h11
import h11._headers
import pytest

from omnicore.console import http1
from omnicore.console.http1 import checked_headers

POLICY = (b"content-security-policy",
          b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:")


class _Counted:
    """h11's field-value expression, counting its matches."""

    def __init__(self, pattern: Any) -> None:
        self.pattern = pattern
        self.matched = 0

    def fullmatch(self, data: bytes) -> Any:
        self.matched += 1
        return self.pattern.fullmatch(data)


def test_an_answers_fields_are_matched_once_not_on_every_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """100 keep-alive answers of four fixed fields (and a length, a date) through the
    console's protocols, on Hypercorn: h11 matched each field of each answer (600 and
    more); now a field is matched the first time it is seen."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    http1.install()
    counted = _Counted(h11._headers._field_value_re)
    monkeypatch.setattr(h11._headers, "_field_value_re", counted)
    http1._CHECKED.clear()

    async def hello(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("hej", headers={POLICY[0].decode(): POLICY[1].decode(),
                                                 "x-frame-options": "DENY"})

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    config = Config()
    config.accesslog = None
    config.bind = [f"fd://{listener.fileno()}"]
    requests, heads = 100, []
    stop = asyncio.Event()

    def client(loop: asyncio.AbstractEventLoop) -> None:
        try:
            with socket.create_connection(address) as c:
                for _ in range(requests):
                    c.sendall(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
                    answer = b""
                    while not answer.endswith(b"hej"):
                        answer += c.recv(65536)
                    heads.append(answer)
        finally:
            loop.call_soon_threadsafe(stop.set)

    async def main() -> None:
        threading.Thread(target=client, args=(asyncio.get_running_loop(),)).start()
        await serve(Starlette(routes=[Route("/hello", hello)]),  # type: ignore[arg-type]
                    config, shutdown_trigger=stop.wait)

    address = listener.getsockname()
    listener.detach()  # Hypercorn serves the descriptor and closes it at its stop
    asyncio.run(main())
    assert len(heads) == requests
    assert all(POLICY[1] in head and b"x-frame-options: DENY" in head for head in heads)
    # the fixed fields once, the date once a second: far fewer than 6 a request
    assert counted.matched < 30, f"{counted.matched} matches for {requests} answers"


def test_the_fields_are_what_h11_makes_of_them() -> None:
    """Names lower-cased, raw names kept, a Content-Length given twice alike sent once: the
    same ``Headers`` as h11's own, the first time and once the fields are known."""
    fields = [(b"Content-Type", b"text/plain"), POLICY, (b"content-length", b"3"),
              (b"Content-Length", b"3"), (b"x-empty", b"")]
    want = h11._headers.normalize_and_validate(fields)
    for _ in range(2):
        got = checked_headers(fields)
        assert got._full_items == want._full_items  # type: ignore[attr-defined]
    # str fields (h11 takes them) go h11's whole way
    assert list(checked_headers([("X-A", "1")])) == [(b"x-a", b"1")]  # type: ignore[list-item]


@pytest.mark.parametrize("bad", [(b"x-a", b"one\r\nx-injected: 1"), (b"x a", b"1"),
                                 (b"x-a", b" leading"), (b"content-length", b"3, 4"),
                                 (b"transfer-encoding", b"gzip")])
def test_a_field_h11_refuses_is_refused_known_fields_or_not(bad: tuple[bytes, bytes]) -> None:
    """An illegal name or value, a conflicting length, a coding h11 cannot send: h11's
    LocalProtocolError, as before, whatever else the head holds and whether its other fields
    were seen before."""
    for _ in range(2):
        with pytest.raises(h11.LocalProtocolError):
            checked_headers([POLICY, bad])
    with pytest.raises(h11.LocalProtocolError):
        checked_headers([POLICY, (b"content-length", b"3"), (b"content-length", b"4")])
