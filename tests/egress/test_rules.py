"""allow_hosts rules with glob hosts (Extism's allowed_hosts): what they match, and that a glob
never names an address the address policy would otherwise refuse."""

from __future__ import annotations

import pytest

from omnicore.egress.rules import AddressPolicy, HostRule, ip_of


@pytest.mark.parametrize(("rule", "host", "matches"), [
    ("http://*:*", "api.example.com", True),
    ("http://*:*", "127.0.0.1", True),
    ("http://*.example.com:*", "a.b.example.com", True),
    ("http://*.example.com:*", "example.com", False),
    ("http://api-?.example.com:*", "api-1.example.com", True),
    ("http://api-?.example.com:*", "api-12.example.com", False),
    ("http://api[12].example.com:*", "api2.example.com", True),
    ("http://api[12].example.com:*", "api3.example.com", False),
    ("http://127.0.0.*:*", "127.0.0.9", True),
])
def test_glob_hosts_match_as_extism_globs(rule: str, host: str, matches: bool) -> None:
    assert HostRule.parse(rule).matches("http", host, 8080) is matches


def test_scheme_and_port_still_apply_to_globs() -> None:
    assert not HostRule.parse("*").matches("http", "x.com", 80)  # no scheme: https only
    assert HostRule.parse("*").matches("https", "x.com", 443)
    assert not HostRule.parse("https://*").matches("https", "x.com", 8443)


@pytest.mark.parametrize("rule", ["http://*:*", "http://127.0.0.*:*", "http://127.0.0.?:*",
                                  "http://127.0.0.[1]:*"])
def test_a_glob_names_no_address(rule: str) -> None:
    parsed = HostRule.parse(rule)
    assert parsed.glob and parsed.literal is None
    named = [r.literal for r in [parsed] if r.literal is not None]
    policy = AddressPolicy().widened(named, ())
    loopback = ip_of("127.0.0.1")
    assert loopback is not None and not policy.admits(loopback)
    # An exact IP rule does name its address.
    exact = HostRule.parse("http://127.0.0.1:*").literal
    assert exact is not None and AddressPolicy().widened([exact], ()).admits(loopback)
