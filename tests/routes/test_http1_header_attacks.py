"""The console's HTTP/1.1 answer heads (omnicore/console/http1.py ``checked_headers``, fields
held to h11's rules once each, 73bfd9fe) and the route table's poll (routes/server.py, a key
first, 18c828f0), attacked as a hostile plugin, client or operator would: a plugin's route
chooses its response head (tests/routes/conftest.py GUEST's ``status`` handler answers the
response block the request's body holds), and every answer is read off a raw socket, as
bytes, then as an HTTP/1.1 client parses them (h11). A field h11 refuses must never reach the
wire, whatever the check saw before; what the check keeps of the fields it saw stays small;
a route change is served on the next poll."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h11
import h11._headers
import httpx
import pytest

from omnicore.console import http1
from omnicore.console.http1 import checked_headers
from omnicore.routes import RoutesServer
from omnicore.sandbox import wasmbin
from tests.routes.conftest import RouteHost, guest_wasm
from tests.routes.test_hostile import route, still_serving
from tests.waiting import eventually

#: A field name, a colon, optional white space, a value of no CR, LF or NUL: one line of a
#: head as it may be on the wire.
_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ \t]*[^\r\n\x00]*")


def _block(head: dict[str, Any] | bytes, body: bytes = b"") -> bytes:
    raw = head if isinstance(head, bytes) else json.dumps(head).encode()
    return struct.pack("<I", len(raw)) + raw + body


def _connect(host: RouteHost) -> tuple[socket.socket, bytes]:
    url = httpx.URL(host.url)
    sock = socket.create_connection((url.host, url.port))
    sock.settimeout(60)  # a safety net only: each read below ends on what arrives
    return sock, f"{url.host}:{url.port}".encode()


def _authority(host: RouteHost) -> bytes:
    url = httpx.URL(host.url)
    return f"{url.host}:{url.port}".encode()


def _post(authority: bytes, path: bytes, body: bytes, *, close: bool) -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nhost: " + authority
            + b"\r\ncontent-length: %d\r\n" % len(body)
            + (b"connection: close\r\n" if close else b"") + b"\r\n" + body)


def _raw(host: RouteHost, *blocks: bytes, path: bytes = b"/http/s") -> bytes:
    """Each block POSTed to ``path`` on one connection (pipelined, the last one closing it),
    and every byte the server sent until it closed."""
    authority = _authority(host)
    return _send_raw(host, b"".join(_post(authority, path, b, close=i == len(blocks) - 1)
                                    for i, b in enumerate(blocks)))


def _answers(data: bytes) -> list[tuple[int, list[tuple[bytes, bytes]], bytes]]:
    """The answers in ``data`` as an HTTP/1.1 client parses them (status, raw head, body),
    each head's lines first checked as bytes: no line h11 could not have written."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=16 << 20)
    conn.receive_data(data)
    conn.receive_data(b"")
    out: list[tuple[int, list[tuple[bytes, bytes]], bytes]] = []
    head: list[tuple[bytes, bytes]] = []
    status, body = 0, b""
    while True:
        if conn.our_state is h11.IDLE:
            conn.send(h11.Request(method=b"POST", target=b"/", headers=[
                (b"host", b"x"), (b"transfer-encoding", b"chunked")]))
            conn.send(h11.EndOfMessage())
        event = conn.next_event()
        if isinstance(event, h11.Response):
            status, head, body = event.status_code, event.headers.raw_items(), b""
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            out.append((status, head, body))
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
        elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            break
    # and as bytes: every line of every head one field, nothing folded or split
    for raw_head in re.findall(rb"HTTP/1\.1 [0-9]{3}[^\r\n]*\r\n(.*?)\r\n\r\n", data, re.S):
        for line in raw_head.split(b"\r\n"):
            assert _LINE.fullmatch(line), line[:200]
    return out


def _values(head: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for k, v in head if k.lower() == name]


def _host(route_host: Callable[..., RouteHost], **more: Any) -> RouteHost:
    return route_host(routes={"echo": route("echo", "/echo"), "s": route("status", "/s")},
                      **more)


# -- a plugin's head ------------------------------------------------------------------------


#: Values and names h11 refuses (CR, LF, NUL, other control characters, an obs-fold, a split
#: line, a name that is no token), each with a field the client must never see.
HOSTILE = [
    {"x-a": "one\r\nx-injected: 1"}, {"x-a": "one\nx-injected: 1"},
    {"x-a": "one\rx-injected: 1"}, {"x-a": "one\x00x-injected: 1"},
    {"x-a": "folded\r\n x-injected: 1"}, {"x-a": "one\x0bx-injected"},
    {"x-a": "one\x0cx-injected"}, {"x-a": "one\x7fx-injected"},
    {"x-a": ["ok", "two\r\n\r\nHTTP/1.1 200 OK\r\nx-injected: 1"]},
    {"x-injected: 1\r\nx-a": "v"}, {"x a": "x-injected"}, {"x:a": "x-injected"},
    {"": "x-injected"}, {"x\u00e9": "x-injected"}, {"x\x00": "x-injected"},
]


def test_a_field_h11_refuses_never_reaches_the_wire_seen_fields_or_not(
        route_host: Callable[..., RouteHost]) -> None:
    """Each hostile head, alone and pipelined after and before an answer whose fields were
    seen (the same name with a good value, the same value under a good name): the hostile
    answer is a 502 of the host's, its connection's next answer is its own (no answer
    split), and no head holds a field the plugin smuggled in."""
    host = _host(route_host)
    good = {"x-a": "one", "x-b": "x-injected"}
    for head in HOSTILE:
        for blocks, want in (((_block({"headers": head}, b"hostile"),), [502]),
                             ((_block({"headers": good}, b"first"),
                               _block({"headers": head}, b"hostile"),
                               _block({"headers": good}, b"last")), [200, 502, 200])):
            data = _raw(host, *blocks)
            assert b"x-injected: 1" not in data.lower(), (head, data[:500])
            answers = _answers(data)
            assert [a[0] for a in answers] == want, (head, answers)
            for _status, fields, _body in answers:
                assert not _values(fields, b"x-injected"), (head, fields)
            if len(blocks) == 3:
                assert answers[0][2] == b"first" and answers[2][2] == b"last"
    still_serving(host)


def test_what_h11_takes_reaches_the_client_as_the_plugin_wrote_it(
        route_host: Callable[..., RouteHost]) -> None:
    """Non-ASCII text (obs-text: UTF-8 bytes, as h11 sends them), a tab inside a value,
    names of mixed case (lower-cased), a value of 512 KiB, an empty value; hop-by-hop fields a
    plugin may not set (a length, a coding: dropped, the host's own length framing the
    body) -- each as the client parses it, twice (seen and unseen)."""
    host = _host(route_host)
    big = "v" * (512 << 10)  # (the block is the request body: max_body_bytes 1 MiB)
    head = {"headers": {"X-Text": "gr\u00fc\u00dfe \u2603", "x-tab": "a\tb",
                        "X-Case": "Upper", "x-case": "lower", "x-big": big, "x-empty": "",
                        "content-length": "0", "transfer-encoding": "chunked",
                        "connection": "close, x-text"}}
    for _ in range(2):
        [(status, fields, body)] = _answers(_raw(host, _block(head, b"the body")))
        assert status == 200 and body == b"the body"
        assert _values(fields, b"x-text") == ["gr\u00fc\u00dfe \u2603".encode()]
        assert _values(fields, b"x-tab") == [b"a\tb"]
        assert sorted(_values(fields, b"x-case")) == [b"Upper", b"lower"]
        assert _values(fields, b"x-big") == [big.encode()]
        assert _values(fields, b"x-empty") == [b""]
        assert _values(fields, b"content-length") == [b"8"]
        assert not _values(fields, b"transfer-encoding")
    still_serving(host)


def test_a_field_seen_under_one_route_is_no_pass_for_another_plugins_bad_one(
        route_host: Callable[..., RouteHost]) -> None:
    """Two plugins, two routes: one answers a field, the other the same name with the
    value plus a smuggled line, the same value under a name that is no token, the same
    bytes split differently across name and value: the check knows (name, value) pairs,
    not names nor values, so nothing seen on one route lets another's field through."""
    host = route_host(plugins={"web.wasm": guest_wasm("web"), "evil.wasm": guest_wasm("evil")},
                      routes={"echo": route("echo", "/echo"), "s": route("status", "/s"),
                              "e": {**route("status", "/e"), "plugin": "evil"}})
    eventually(lambda: len(host.app.plugins) == 2, "both plugins")
    seen = {"headers": {"x-policy": "default-src 'self'", "x-ab": "c"}}
    [(status, _, _)] = _answers(_raw(host, _block(seen)))
    assert status == 200
    for head in ({"x-policy": "default-src 'self'\r\nx-injected: 1"},
                 {"x-policy\r\nx-injected": "default-src 'self'"},
                 {"x-a": "b\r\nx-injected: 1"}):
        data = _raw(host, _block({"headers": head}), path=b"/http/e")
        [(status, fields, _)] = _answers(data)
        assert status == 502 and not _values(fields, b"x-injected"), head
        assert b"x-injected" not in data
    # and the evil plugin's own answer of the seen field is served
    [(status, fields, _)] = _answers(_raw(host, _block(seen), path=b"/http/e"))
    assert status == 200 and _values(fields, b"x-policy") == [b"default-src 'self'"]


def test_a_plugin_answering_unique_fields_fills_nothing_past_the_bound(
        route_host: Callable[..., RouteHost]) -> None:
    """A hostile plugin answers a new field every time (a counter, a long random value): the
    fields the check keeps stay within their count (512) and their bytes (a plugin's
    fields of 64 KiB, one answer in four, held some 4 MiB until the count's bound), and a bad field
    after them is refused as the first one was."""
    host = _host(route_host)
    value = "z" * (64 << 10)
    sock, authority = _connect(host)
    most = 0
    try:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=16 << 20)
        for i in range(300):
            fields = {f"x-n{i}": str(i), "x-long": f"{i}-{value}"} if i % 4 == 0 else \
                {f"x-n{i}": str(i), "x-m": f"{i}"}
            body = _block({"headers": fields})
            sock.sendall(conn.send(h11.Request(method=b"POST", target=b"/http/s", headers=[
                (b"host", authority), (b"content-length", b"%d" % len(body))])) or b"")
            sock.sendall(conn.send(h11.Data(data=body)) or b"")
            sock.sendall(conn.send(h11.EndOfMessage()) or b"")
            status = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(1 << 20))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    assert _values(event.headers.raw_items(), b"x-n%d" % i) == [b"%d" % i]
                elif isinstance(event, h11.EndOfMessage):
                    break
            assert status == 200
            conn.start_next_cycle()
            assert len(http1._CHECKED) <= http1._CHECKED_MAX
            most = max(most, sum(len(name) + len(v) for name, v in tuple(http1._CHECKED)))
    finally:
        sock.close()
    assert most <= 1 << 20, f"{most} bytes of fields held at once for the plugin's answers"
    data = _raw(host, _block({"headers": {"x-n3": "3\r\nx-injected: 1"}}))
    [(status, head, _)] = _answers(data)
    assert status == 502 and not _values(head, b"x-injected") and b"x-injected" not in data
    still_serving(host)


def _send_raw(host: RouteHost, request: bytes) -> bytes:
    """``request``'s bytes sent on a new connection, and every byte the server sent until it
    closed."""
    sock, _ = _connect(host)
    got = b""
    try:
        sock.sendall(request)
        while chunk := sock.recv(1 << 20):
            got += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return got


def test_a_clients_input_reflected_into_a_head_splits_no_answer(
        route_host: Callable[..., RouteHost]) -> None:
    """A hostile client's bytes where an answer reflects them: an encoded CR/LF or NUL in a
    path the console redirects to its sign-in page (the path in ``next``), a route's echo of
    a request header folded over two lines (obs-fold, which h11 reads as one value), a
    header with a raw CR: each answer one head of well-formed lines (or a refusal), never a
    field the client wrote as a line of its own."""
    host = _host(route_host)
    authority = _authority(host)
    asks = [b"GET /plugins/x%0d%0ax-injected:%201 HTTP/1.1\r\nhost: " + authority
            + b"\r\nconnection: close\r\n\r\n",
            b"GET /plugins/x%00%0ax-injected:%201?next=%0d%0ax-injected:%201 HTTP/1.1\r\n"
            b"host: " + authority + b"\r\nconnection: close\r\n\r\n",
            b"POST /http/echo HTTP/1.1\r\nhost: " + authority + b"\r\nx-a: one\r\n"
            b" x-injected: 1\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            b"POST /http/echo HTTP/1.1\r\nhost: " + authority + b"\r\nx-a: one\rx-injected: 1"
            b"\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"]
    for ask in asks:
        data = _send_raw(host, ask)
        for _status, fields, _body in _answers(data):
            assert not _values(fields, b"x-injected"), (ask, fields)
        assert not re.search(rb"\r\nx-injected:", data, re.I), (ask, data[:500])
    still_serving(host)


# -- the check itself, called as the protocol calls it --------------------------------------


POLICY = (b"content-security-policy", b"sandbox allow-scripts allow-forms")


@pytest.mark.parametrize("bad", [
    (b"x-a", b"v\r\nx-injected: 1"), (b"x-a", b"v\nx"), (b"x-a", b"v\x00"),
    (b"x-a", b"a\r\n b"), (b"x-a", b" lead"), (b"x-a", b"trail\t"), (b"x-a", b"\x0b"),
    (b"X-A\r\nx", b"v"), (b"x a", b"v"), (b"", b"v"), (b"x\xc3\xa9", b"v"),
    (b"content-length", b"1, 2"), (b"content-length", b"-1"), (b"content-length", b"1" * 21),
    (b"transfer-encoding", b"gzip, chunked"),
])
def test_a_bad_field_is_refused_after_every_neighbour_of_it_was_seen(
        bad: tuple[bytes, bytes]) -> None:
    """Its name seen with a good value, its value seen under a good name, its name in
    another case seen, the set filled to its bound and cleared: still h11's error, each
    time, and never kept as seen when the fields' own expressions refuse it."""
    name, value = bad
    good = {b"content-length": b"1", b"transfer-encoding": b"chunked"}.get(name, b"ok")
    token = h11._headers._field_name_re.fullmatch(name) is not None
    neighbours = [(name if token else b"x-a", good),
                  (b"x-a", value if h11._headers._field_value_re.fullmatch(value) else b"ok"),
                  (name.upper() if token and name != b"transfer-encoding" else b"X-A",
                   good), POLICY]
    with pytest.raises(h11.LocalProtocolError):
        h11._headers.normalize_and_validate([*neighbours, bad])  # h11's own answer
    for round_ in range(3):
        checked_headers(neighbours)
        for i in range(http1._CHECKED_MAX + 7 if round_ == 1 else 0):
            checked_headers([(b"x-fill", b"%d" % i)])  # the bound reached: all forgotten
        with pytest.raises(h11.LocalProtocolError):
            checked_headers([*neighbours, bad])
        with pytest.raises(h11.LocalProtocolError):
            checked_headers([bad, *neighbours])
        if not token or not h11._headers._field_value_re.fullmatch(value):
            assert bad not in http1._CHECKED  # (a length or coding h11 refuses is a good
            # field: its rules are held on every answer, after the fields' expressions)
        assert len(http1._CHECKED) <= http1._CHECKED_MAX


class _Forged(bytes):
    """A bytes value that says it equals (and hashes as) a field value already seen."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash(POLICY[1])


def test_a_value_that_only_claims_to_be_a_seen_one_goes_h11s_whole_way() -> None:
    """Anything not a pair of exact ``bytes`` goes h11's whole way (the check's promise): a
    ``bytes`` subclass equal to and hashing as a seen field, str pairs, list pairs,
    bytearrays -- what h11 makes of them, never a value taken as seen for its claim."""
    checked_headers([POLICY])
    forged: tuple[bytes, bytes] = (POLICY[0], _Forged(b"x\r\nx-injected: 1"))
    with pytest.raises(h11.LocalProtocolError):
        h11._headers.normalize_and_validate([forged])
    with pytest.raises(h11.LocalProtocolError):
        checked_headers([forged])
    with pytest.raises(h11.LocalProtocolError):
        checked_headers([(POLICY[0], "x\r\nx-injected: 1")])  # type: ignore[list-item]
    # pairs h11 takes: the same Headers as h11's
    cases: list[Any] = [[[b"x-list", b"1"]], [(b"x-ba", bytearray(b"2"))], [("X-Str", "3")],
                        [POLICY, (POLICY[0].decode(), POLICY[1].decode())]]
    for fields in cases:
        want = h11._headers.normalize_and_validate(fields)
        got = checked_headers(fields)
        assert got._full_items == want._full_items


# -- the route table's poll ------------------------------------------------------------------


def _poll(server: RoutesServer) -> dict[str, Any]:
    """A due poll of ``server``'s table: its routes by name (their path, auth, methods)."""
    server._checked = float("-inf")
    return {r.name: (r.settings.path, r.settings.auth, sorted(r.methods or ["*"]))
            for r in server.table().routes}


def test_a_sidecar_rewritten_to_the_same_size_and_mtime_is_seen(
        route_host: Callable[..., RouteHost]) -> None:
    """An operator's tool that keeps a file's time (cp -p, tar, rsync -t --inplace)
    rewrites the sidecar in place (same inode) to a text of the same length, its route's
    path changed and its auth tightened (public to token): the next poll serves the new
    route, not the old one (the old: a public route the operator took away)."""
    sidecar_text = "routes:\n  side: {handler: echo, path: /open, auth: %s}\n"
    host = route_host(routes={"echo": route("echo", "/echo")},
                      sidecars={"web.yaml": sidecar_text % "public"})
    server = RoutesServer(host.app, lambda _token: None)
    assert _poll(server)["side"][:2] == ("/open", "public")
    eventually(lambda: host.client.get("/http/open").status_code == 200, "the public route")
    sidecar = host.root / "plugins" / "web.yaml"
    before = os.stat(sidecar)
    new = sidecar_text.replace("/open", "/shut") % "token "
    assert len(new) == before.st_size
    with open(sidecar, "r+") as f:  # in place: the same inode
        f.write(new)
    os.utime(sidecar, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(sidecar)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)
    assert _poll(server)["side"][:2] == ("/shut", "token")
    # and the host's own server, on its next poll
    eventually(lambda: host.client.get("/http/open").status_code == 404
               and host.client.get("/http/shut").status_code == 401,
               "the rewritten sidecar's route served")


def test_a_sidecar_swapped_for_a_symlink_or_removed_and_made_again_is_seen(
        route_host: Callable[..., RouteHost], tmp_path: Path) -> None:
    """The sidecar replaced by a symlink to another file, the link pointed elsewhere, the
    link left dangling, two sidecars at once (none served: read_sidecar's rule), the file
    removed and made again between two polls: each poll serves what the files now say."""
    host = route_host(routes={"echo": route("echo", "/echo")})
    server = RoutesServer(host.app, lambda _token: None)
    side = host.root / "plugins" / "web.yaml"
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("routes:\n  r: {handler: echo, path: /one, auth: public}\n")
    two.write_text("routes:\n  r: {handler: echo, path: /two, auth: public}\n")
    assert set(_poll(server)) == {"echo"}
    side.symlink_to(one)
    assert _poll(server)["r"][0] == "/one"
    side.unlink()
    side.symlink_to(two)
    assert _poll(server)["r"][0] == "/two"
    side.unlink()
    side.symlink_to(tmp_path / "nothing.yaml")
    assert set(_poll(server)) == {"echo"}
    side.unlink()
    side.write_text("routes:\n  r: {handler: echo, path: /own, auth: public}\n")
    (host.root / "plugins" / "web.toml").write_text(
        '[routes.t]\nhandler = "echo"\npath = "/t"\nauth = "public"\n')
    assert set(_poll(server)) == {"echo"}  # two sidecars: neither is read
    (host.root / "plugins" / "web.toml").unlink()
    assert _poll(server)["r"][0] == "/own"
    side.unlink()
    side.write_text("routes:\n  r: {handler: echo, path: /new, auth: public}\n")
    assert _poll(server)["r"][0] == "/new"


def test_the_configs_routes_changed_by_a_live_reload_are_served(
        route_host: Callable[..., RouteHost]) -> None:
    """A reload that takes a route away, one that changes only its auth, one that puts the
    same routes back: each poll after it serves what the config says."""
    host = _host(route_host)
    server = RoutesServer(host.app, lambda _token: None)
    assert _poll(server)["s"][1] == "public"
    host.edit(serve={"routes": {"echo": route("echo", "/echo"),
                                "s": route("status", "/s", auth="token")}})
    assert _poll(server)["s"][1] == "token"
    assert host.client.post("/http/s", content=_block({})).status_code == 401
    host.edit(serve={"routes": {"echo": route("echo", "/echo")}})
    assert set(_poll(server)) == {"echo"}
    host.edit(log={"level": "debug"})  # another section: the routes are as they were
    assert set(_poll(server)) == {"echo"}
    eventually(lambda: host.client.post("/http/s", content=_block({})).status_code == 404,
               "the route taken away")


def _proposing(auth: str, path: str) -> bytes:
    manifest = {"name": "web", "routes": [{"name": "hook", "path": path, "methods": ["POST"],
                                           "handler": "echo", "auth": auth}]}
    return wasmbin.set_custom_section(guest_wasm(), "omnicore.manifest",
                                      json.dumps(manifest).encode())


def test_a_plugin_replaced_by_one_of_its_name_proposing_another_route_is_seen(
        route_host: Callable[..., RouteHost]) -> None:
    """The operator accepted the plugin's proposal (``{proposal: hook}``): a public route.
    The plugin file is replaced by a new version of the same name, the same handlers, in
    the same file, whose proposal is a token route at another path (its author closing a
    hole). Between two polls nothing but the module changed (name, state, file, handlers
    alike): the next poll must serve the new proposal, not the old public route."""
    host = route_host(plugins={"web.wasm": _proposing("public", "/hook")},
                      sidecars={"web.yaml": "routes:\n  hook: {proposal: hook}\n"})
    server = RoutesServer(host.app, lambda _token: None)
    assert _poll(server)["hook"][:2] == ("/hook", "public")
    old = host.app.plugins.get("web").sha256
    new = _proposing("token", "/hoo2")
    (host.root / "plugins" / "web.wasm").write_bytes(new)
    eventually(lambda: (lambda i: i.sha256 != old and i.state == "loaded")(
        host.app.plugins.get("web")), "the new version's load")
    assert _poll(server)["hook"][:2] == ("/hoo2", "token")
    eventually(lambda: host.client.post("/http/hook", content=b"x").status_code == 404
               and host.client.post("/http/hoo2", content=b"x").status_code == 401,
               "the new proposal served")


def test_a_plugin_file_removed_takes_its_sidecars_routes_with_it(
        route_host: Callable[..., RouteHost]) -> None:
    """The plugin's file removed, its sidecar left: the sidecar's routes are not served on
    the next poll (no plugin behind them), and come back with the file."""
    host = route_host(routes={"echo": route("echo", "/echo")},
                      plugins={"web.wasm": guest_wasm(), "side.wasm": guest_wasm("side")},
                      sidecars={"side.yaml": "routes:\n  r: {handler: echo, path: /r, "
                                             "auth: public, methods: [POST]}\n"})
    server = RoutesServer(host.app, lambda _token: None)
    assert set(_poll(server)) == {"echo", "r"}
    eventually(lambda: host.client.post("/http/r", content=b"x").status_code == 200,
               "its route served")
    wasm = host.root / "plugins" / "side.wasm"
    wasm.unlink()
    eventually(lambda: "side" not in host.app.plugins, "the plugin gone")
    assert set(_poll(server)) == {"echo"}
    eventually(lambda: host.client.post("/http/r", content=b"x").status_code == 404,
               "its route gone")
    wasm.write_bytes(guest_wasm("side"))
    eventually(lambda: "side" in host.app.plugins
               and host.app.plugins.get("side").state == "loaded", "the plugin back")
    assert set(_poll(server)) == {"echo", "r"}
    eventually(lambda: host.client.post("/http/r", content=b"x").status_code == 200,
               "its route back")
