"""``app.egress`` against real HTTP servers on 127.0.0.1, with the app's real secret store: one
address policy for every kind of caller (a plugin's grant, a workflow's connector), secret
references that resolve only under their connector, and every spelling of a credential cut
from the answer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

from omnicore import OmniApp
from omnicore.egress import Client, Egress, Refused, Request, SecretMissing, SecretRef
from omnicore.errors import ConfigError
from tests.egress.echo import ALL, Echo, leaks

TOKEN = "tok/en+4f9b~2c7e=1d8a>>?"
EXTRA = "extra/secret+value=42"


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


@pytest.fixture
def other() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


@pytest.fixture
def egress(make_app: Callable[..., OmniApp]) -> Callable[[dict[str, Any]], Egress]:
    def build(connectors: dict[str, Any]) -> Egress:
        app = make_app(overrides={"connectors": connectors})
        app.start()
        app.secrets.set("TOKEN", TOKEN)
        app.secrets.set("EXTRA", EXTRA)
        app.secrets.set("CRLF", "a-value\r\nX-Injected: yes")
        return app.egress

    return build


def callers(egress: Egress, name: str) -> list[tuple[str, Client]]:
    """The same connector as a workflow step and as a plugin's grant sees it."""
    return [("workflow step", egress.connector_client(name, max_response_bytes=1 << 20)),
            ("plugin", egress.client("p", {"connectors": [name]}))]


def test_every_caller_refuses_a_private_address_behind_a_name(
        egress: Callable[[dict[str, Any]], Egress], echo: Echo) -> None:
    e = egress({
        "named": {"base_url": f"http://localhost:{echo.port}"},
        "other-net": {"base_url": f"http://localhost:{echo.port}",
                      "allow_addresses": ["10.0.0.0/8", "fd00::/8"]},
        "allowed": {"base_url": f"http://localhost:{echo.port}",
                    "allow_addresses": ["127.0.0.0/8", "::1"]},
        "literal": {"base_url": f"http://127.0.0.1:{echo.port}"},
    })
    for name in ("named", "other-net"):
        for who, client in callers(e, name):
            with pytest.raises(Refused) as info:
                client.send(Request(connector=name, path="/x"))
            assert info.value.status == "DENIED" and "127.0.0.1" in str(info.value), who
    # A plugin naming the host itself gets no further than through the connector.
    plugin = e.client("q", {"allow_hosts": [f"http://localhost:{echo.port}"]})
    with pytest.raises(Refused, match="resolves to"):
        plugin.send(Request(url=f"http://localhost:{echo.port}/x"))
    assert echo.seen == []
    # Naming the network (or the address, as a base URL's IP) is the operator's grant.
    for name in ("allowed", "literal"):
        for who, client in callers(e, name):
            assert client.send(Request(connector=name, path="/ok")).status == 200, who
    assert len(echo.seen) == 4


def test_a_workflow_client_follows_no_redirect(egress: Callable[[dict[str, Any]], Egress],
                                               echo: Echo, other: Echo) -> None:
    e = egress({"api": {"base_url": echo.base, "auth": "bearer", "secret": "TOKEN"}})
    step = e.connector_client("api", max_response_bytes=1 << 20)
    resp = step.send(Request(connector="api", path=f"/redirect?to={quote(other.base)}/ok"))
    assert resp.status == 302 and other.seen == []
    plugin = e.client("p", {"connectors": ["api"], "allow_hosts": [other.base]})
    assert plugin.send(Request(connector="api",
                               path=f"/redirect?to={quote(other.base)}/ok")).status == 200
    assert "Authorization" not in other.seen[-1]["headers"]      # credentials stay home


def test_secret_references_resolve_only_under_their_connector(
        egress: Callable[[dict[str, Any]], Egress], echo: Echo) -> None:
    e = egress({"api": {"base_url": echo.base}})
    client = e.connector_client("api", max_response_bytes=1 << 20)
    client.send(Request(connector="api", path="/x", headers={
        "X-Extra": ("v=", SecretRef("EXTRA"), ";"), "X-Plain": "[secret EXTRA]"}))
    sent = echo.seen[-1]["headers"]
    assert sent["X-Extra"] == f"v={EXTRA};" and sent["X-Plain"] == "[secret EXTRA]"
    plugin = e.client("p", {"allow_hosts": [echo.base], "allow_addresses": ["127.0.0.1"]})
    with pytest.raises(Refused, match="need a connector") as info:
        plugin.send(Request(url=f"{echo.base}/x", headers={"X": (SecretRef("EXTRA"),)}))
    assert info.value.status == "INVALID"
    with pytest.raises(SecretMissing) as missing:
        client.send(Request(connector="api", path="/x", headers={"X": (SecretRef("NOPE"),)}))
    assert missing.value.name == "NOPE" and not missing.value.retryable
    with pytest.raises(Refused, match="a secret it uses breaks the rule"):
        client.send(Request(connector="api", path="/x", headers={"X": (SecretRef("CRLF"),)}))
    assert len(echo.seen) == 1


@pytest.mark.parametrize("encoding", ALL)
def test_every_spelling_of_a_credential_is_cut_from_the_answer(
        egress: Callable[[dict[str, Any]], Egress], echo: Echo, encoding: str) -> None:
    e = egress({"api": {"base_url": echo.base, "auth": "bearer", "secret": "TOKEN"}})
    for who, client in callers(e, "api"):
        resp = client.send(Request(connector="api", path=f"/echo/{encoding}",
                                   headers={"X-Extra": (SecretRef("EXTRA"),)}))
        assert echo.seen[-1]["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert echo.seen[-1]["headers"]["X-Extra"] == EXTRA
        assert leaks(resp.body, TOKEN, EXTRA) == [], (who, resp.body)
        assert leaks(json.dumps(resp.headers), TOKEN, EXTRA) == [], (who, resp.headers)
        assert b"[REDACTED]" in resp.body
        # What the caller decodes is redacted again after decoding.
        decoded = resp.redactor.cut_value(json.loads(resp.body))
        assert leaks(json.dumps(decoded, ensure_ascii=False), TOKEN, EXTRA) == []


#: Names and values RFC 9110 does not allow, each of a kind the old check (CR, LF, NUL, ':'
#: and space only) let through to urllib3, which sent most of them.
BAD_NAMES = ["x(y)", "x@y", "x/y", "x\ty", "é", "x\x7f", "", "x\u212a"]
BAD_VALUES = ["a\x01b", "a\x7fb", "a\x0bb", "a\u20acb", "a\r\n b"]


def test_a_plugins_headers_are_judged_by_rfc_9110_before_anything_is_sent(
        egress: Callable[[dict[str, Any]], Egress], echo: Echo) -> None:
    """omnicore/httpfields.py's grammar for every header a plugin or a step gives, and for
    the secrets resolved into them: INVALID, naming the rule, and nothing reaches the
    server. A value with latin-1 (é) and a tab goes as it is."""
    e = egress({"api": {"base_url": echo.base}})
    plugin = e.client("p", {"allow_hosts": [echo.base], "allow_addresses": ["127.0.0.1"]})
    for name in BAD_NAMES:
        with pytest.raises(Refused, match="a header name is a token") as info:
            plugin.send(Request(url=f"{echo.base}/x", headers={name: "v"}))
        assert info.value.status == "INVALID", name
    for value in BAD_VALUES:
        with pytest.raises(Refused, match="no CR, LF, NUL or other control") as info:
            plugin.send(Request(url=f"{echo.base}/x", headers={"x-v": value}))
        assert info.value.status == "INVALID", value
    assert echo.seen == []
    plugin.send(Request(url=f"{echo.base}/x", headers={"X-Ok": "caf\u00e9\tau lait"}))
    assert echo.seen[-1]["headers"]["X-Ok"] == "caf\u00e9\tau lait"


def test_a_connectors_headers_are_judged_at_load_and_its_secret_at_use(
        make_app: Callable[..., OmniApp], egress: Callable[[dict[str, Any]], Egress],
        echo: Echo) -> None:
    """An operator's header that cannot be sent is a config error naming the key when the
    connectors are read (as a bad base_url is: the host's first use, a reload's check), not
    a refusal of every request after; a secret with a line break in it is refused where it
    would become a header (bearer, header auth), never sent."""
    for spec, key in (({"headers": {"x(y)": "v"}}, "connectors.api.headers"),
                      ({"headers": {"x-v": "a\x01b"}}, "connectors.api.headers"),
                      ({"auth": "header", "secret": "TOKEN", "header": "x key"},
                       "connectors.api.header")):
        app = make_app(overrides={"connectors": {"api": {"base_url": echo.base, **spec}}})
        with pytest.raises(ConfigError) as info:
            app.connectors  # noqa: B018 (read: made and checked)
        assert info.value.key == key, (spec, info.value)
    e = egress({"bearer": {"base_url": echo.base, "auth": "bearer", "secret": "CRLF"},
                "header": {"base_url": echo.base, "auth": "header", "secret": "CRLF",
                           "header": "X-Key"},
                "basic": {"base_url": echo.base, "auth": "basic", "secret": "CRLF",
                          "username": "u"}})
    for name in ("bearer", "header"):
        with pytest.raises(Refused, match="its secret breaks the rule") as info:
            e.connector_client(name, max_response_bytes=1 << 20).send(
                Request(connector=name, path="/x"))
        assert info.value.status == "INVALID" and "X-Injected" not in str(info.value)
    assert echo.seen == []
    # basic auth sends the secret base64-encoded: any bytes go
    e.connector_client("basic", max_response_bytes=1 << 20).send(
        Request(connector="basic", path="/x"))
    assert echo.seen[-1]["headers"]["Authorization"].startswith("Basic ")
