"""The small parts: references, challenges, the Docker config file, the config keys."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from omnicore.config import load_config
from omnicore.oci import Reference
from omnicore.oci.auth import find_credentials, parse_challenge


@pytest.mark.parametrize(("text", "want"), [
    ("oci://ghcr.io/acme/greeter:1.0", ("ghcr.io", "acme/greeter", "1.0", None)),
    ("oci://localhost:5000/greeter", ("localhost:5000", "greeter", "latest", None)),
    ("oci://docker.io/greeter:2", ("docker.io", "library/greeter", "2", None)),
    ("oci://r.io/a/b@sha256:" + "a" * 64, ("r.io", "a/b", None, "sha256:" + "a" * 64)),
])
def test_references_parse(text: str, want: tuple[str, str, str | None, str | None]) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == want


@pytest.mark.parametrize(("text", "why"), [
    ("ghcr.io/acme/x:1", "is not an OCI reference"),
    ("oci://ghcr.io", "names no repository"),
    ("oci://ghcr.io/Acme/x", "must be lowercase"),
    ("oci://ghcr.io/x@sha256:abc", "64 lowercase hex"),
    ("oci://ghcr.io/x:-bad", "is not a tag"),
    ("oci://bad host/x", "is not a registry"),
])
def test_bad_references_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Reference.parse(text)


def test_challenges_parse() -> None:
    ch = parse_challenge('Bearer realm="https://auth.io/token",service="reg",'
                         'scope="repository:a/b:pull,push"')
    assert ch is not None and ch.scheme == "bearer"
    assert dict(ch.params) == {"realm": "https://auth.io/token", "service": "reg",
                               "scope": "repository:a/b:pull,push"}
    basic = parse_challenge('Basic realm="x"')
    assert basic is not None and basic.scheme == "basic"
    assert parse_challenge("Negotiate abc") is None


def test_the_docker_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {
        "r.io": {"auth": base64.b64encode(b"me:pw").decode()},
        "https://index.docker.io/v1/": {"username": "hub", "password": "x"},
        "t.io": {"identitytoken": "refresh-me"}}}))
    creds = find_credentials("r.io", config=path)
    assert creds is not None and (creds.username, creds.password) == ("me", "pw")
    assert "pw" not in repr(creds)
    hub = find_credentials("docker.io", config=path)
    assert hub is not None and hub.username == "hub"
    token = find_credentials("t.io", config=path)
    assert token is not None and token.identity_token == "refresh-me"
    assert find_credentials("other.io", config=path) is None
    assert find_credentials("r.io", config=tmp_path / "missing.json") is None
    path.write_text(json.dumps({"credHelpers": {"h.io": "nosuchhelper"}}))
    with pytest.raises(ValueError, match="docker-credential-nosuchhelper is not on PATH"):
        find_credentials("h.io", config=path)


def test_plugins_trust_is_the_policy_not_a_plugin(tmp_path: Path) -> None:
    (tmp_path / "omnicore.yaml").write_text(
        "plugins:\n  trust:\n    keys: [keys/ops.pub]\n    require: true\n"
        "  greeter: {grants: [kv]}\nregistry:\n  ca_file: certs/ca.pem\n")
    cfg = load_config(tmp_path / "omnicore.yaml")
    assert list(cfg.plugins) == ["greeter"]
    assert cfg.trust.require and cfg.trust.keys == [str(tmp_path / "keys" / "ops.pub")]
    assert cfg.registry.ca_file == tmp_path / "certs" / "ca.pem"
    assert cfg.source_of("trust.require").endswith("omnicore.yaml:4")
