"""Extism's http host functions on omnicore's http capability: the manifest's allowed_hosts as
the http grant, the grant's own checks and limits, a real server on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.errors import ConfigError, DeadlineExceeded, PluginError, Trap
from omnicore.extism import host_fn
from omnicore.plugins.host import PluginHost
from tests.extism.extism_loopback import loopback_server


@host_fn(name="shout")
def shout(text: str) -> str:
    return text.upper()


@pytest.fixture
def plugins(tmp_path: Path, pdk_wasm: Path) -> Path:
    shutil.copy(pdk_wasm, tmp_path / "web.wasm")
    return tmp_path


@pytest.fixture
def host() -> Iterator[PluginHost]:
    # A high breaker threshold: these tests fail calls on purpose, one after another.
    with PluginHost(failure_threshold=100) as h:
        h.extism_functions.append(shout)
        yield h


def get(url: str) -> bytes:
    return json.dumps({"url": url}).encode()


def test_allowed_hosts_become_the_http_grant(host: PluginHost, plugins: Path,
                                             server: str) -> None:
    (plugins / "web.json").write_text(json.dumps(
        {"allowed_hosts": ["127.0.0.1", "*.example.com"],
         "memory": {"max_http_response_bytes": 4096}}))
    info = host.load(plugins / "web.wasm", grants=["config"])
    assert info.granted["http"] == {
        "allow_hosts": ["http://127.0.0.1:*", "https://127.0.0.1:*",
                        "http://*.example.com:*", "https://*.example.com:*"],
        "max_response_bytes": 4096}
    assert host.call("web", "http", get(f"{server}/a")) == b"200 got /a x=None"
    assert host.call("web", "http_last_status", b"") == b"200"


def test_a_name_resolving_to_loopback_needs_the_manifest_to_name_it(
        host: PluginHost, plugins: Path, server: str) -> None:
    port = server.rsplit(":", 1)[1]
    # '*' allows every host, as in Extism, but names no private address: the one difference.
    (plugins / "web.json").write_text(json.dumps({"allowed_hosts": ["*"]}))
    host.load(plugins / "web.wasm")
    for url in (f"http://localhost:{port}/a", f"{server}/a"):
        with pytest.raises(Trap, match=r"HTTP request to http://.*/a is not allowed: .*resolves "
                                       r"to .*omnicore differs from Extism here.*allowed_hosts"):
            host.call("web", "http", get(url))
    host.unload("web")
    # The sidecar's http grant adds up with the manifest's: its options, both host lists.
    (plugins / "web.toml").write_text('[grant.http]\nallow_addresses = ["127.0.0.0/8", "::1"]\n')
    info = host.load(plugins / "web.wasm")
    assert info.granted["http"]["allow_addresses"] == ["127.0.0.0/8", "::1"]
    assert host.call("web", "http", get(f"http://localhost:{port}/a")) == b"200 got /a x=None"
    host.unload("web")
    (plugins / "web.toml").unlink()
    # 'localhost' in allowed_hosts names the loopback addresses it resolves to.
    (plugins / "web.json").write_text(json.dumps({"allowed_hosts": ["localhost"]}))
    assert host.load(plugins / "web.wasm").granted["http"]["allow_addresses"] == [
        "127.0.0.0/8", "::1/128"]
    assert host.call("web", "http", get(f"http://localhost:{port}/a")) == b"200 got /a x=None"
    with pytest.raises(Trap, match=r"is not allowed: http://127\.0\.0\.1:.* is not in the grant"):
        host.call("web", "http", get(f"{server}/a"))  # as in Extism: the IP is another host


def test_no_manifest_means_no_http(host: PluginHost, plugins: Path, server: str) -> None:
    host.load(plugins / "web.wasm", grants=["config"])
    with pytest.raises(Trap, match=r"HTTP request to http://127.0.0.1:\d+/a is not allowed "
                                   r"\(no allowed_hosts"):
        host.call("web", "http", get(f"{server}/a"))
    assert host.call("web", "echo", b"still serving") == b"still serving"


def test_requests_in_flight_are_bounded_by_max_concurrent(host: PluginHost,
                                                          plugins: Path) -> None:
    (plugins / "web.json").write_text(json.dumps({"allowed_hosts": ["127.0.0.1"]}))
    (plugins / "web.toml").write_text("[grant.http]\nmax_concurrent = 1\n")
    host.load(plugins / "web.wasm", grants=["config"], limits={"timeout_ms": 10_000})
    with loopback_server() as loop:
        first: list[bytes | Exception] = []

        def slow() -> None:
            try:
                first.append(host.call("web", "http", get(f"{loop.url}/stall")))
            except PluginError as exc:
                first.append(exc)

        thread = threading.Thread(target=slow)
        thread.start()
        assert loop.stalled.wait(10)
        with pytest.raises(Trap, match="QUOTA: 1 requests of this plugin are already in flight"):
            host.call("web", "http", get(f"{loop.url}/a"))
        loop.stall.set()
        thread.join(10)
        assert first == [b"200 late"]
        assert host.call("web", "http", get(f"{loop.url}/a")) == b"200 got /a x=None"


def test_a_stalled_server_cannot_hold_the_call_past_its_deadline(
        host: PluginHost, plugins: Path) -> None:
    # The deadline covers the instance's start too: 200 ms was too little for it on a
    # loaded CI machine (an image build on the other core). The server stalls for good.
    (plugins / "web.json").write_text(json.dumps({"allowed_hosts": ["127.0.0.1"],
                                                  "timeout_ms": 1000}))
    assert host.load(plugins / "web.wasm", grants=["config"]).limits.timeout_ms == 1000
    with loopback_server() as loop:
        with pytest.raises(DeadlineExceeded, match="timeout"):
            host.call("web", "http", get(f"{loop.url}/stall"))
        # The instance that timed out is gone; the next call works.
        assert host.call("web", "http", get(f"{loop.url}/a")) == b"200 got /a x=None"


def test_bad_requests_fail_the_call_with_the_reason(host: PluginHost, plugins: Path,
                                                    server: str) -> None:
    (plugins / "web.json").write_text(json.dumps({"allowed_hosts": ["127.0.0.1"]}))
    host.load(plugins / "web.wasm", grants=["config"])
    for request, reason in [
            (b'{"headers": {}}', 'it needs a "url" string'),
            (b'{"url": "x", "headers": {"a": 1}}', '"headers" an object of strings'),
            (json.dumps({"url": f"{server}/a", "method": "BREW"}).encode(),
             "INVALID: unsupported method"),
            (json.dumps({"url": "file:///etc/passwd"}).encode(), "INVALID: url must be http"),
            (json.dumps({"url": f"{server}/a", "headers": {"x": "a\r\nInjected: 1"}}).encode(),
             "INVALID: bad header .x.: a header value holds no CR, LF, NUL"),
            (get(f"{server}/{'a' * 70_000}"), "larger than 65536 bytes")]:
        with pytest.raises(Trap, match=reason):
            host.call("web", "http", request)
    assert host.call("web", "http", get(f"{server}/a")) == b"200 got /a x=None"


def test_connectors_are_refused_for_extism_plugins(host: PluginHost, plugins: Path) -> None:
    (plugins / "web.toml").write_text('[grant.http]\nconnectors = ["github"]\n')
    with pytest.raises(ConfigError, match="connectors is not available"):
        host.load(plugins / "web.wasm", grants=["config"])
