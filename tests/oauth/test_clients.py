"""Which client ids name a client ID metadata document, and the package's public names."""

from __future__ import annotations

import pytest

import omnicore.oauth
from omnicore.oauth import MetadataDocuments, is_document_id


@pytest.mark.parametrize(("client_id", "loopback", "named"), [
    ("https://agent.example/client.json", False, True),
    ("https://agent.example:8443/c", False, True),
    ("https://agent.example", False, False),  # no path
    ("https://agent.example/", False, False),
    ("https://user:pw@agent.example/c", False, False),
    ("https://agent.example/c#frag", False, False),
    ("http://agent.example/c", False, False),
    ("http://127.0.0.1:9/c", False, False),
    ("http://127.0.0.1:9/c", True, True),
    ("http://localhost:9/c", True, False),  # a name that could resolve anywhere
    ("http://10.0.0.1/c", True, False),
    ("5d2b1805-aec6-4c09-b6c0-7865b3bfe7b2", True, False),  # a registered client's id
])
def test_document_ids(client_id: str, loopback: bool, named: bool) -> None:
    assert is_document_id(client_id, allow_loopback=loopback) is named


def test_a_private_address_is_never_fetched() -> None:
    # Without the loopback switch the egress policy refuses 127.0.0.1 before connecting.
    assert MetadataDocuments().get("https://127.0.0.1:9/client.json") is None


def test_all_is_pinned() -> None:
    assert sorted(omnicore.oauth.__all__) == [
        "AuthServer", "CONSENT_PATH", "Consent", "MetadataDocuments", "OAuthCaller", "SCOPES",
        "digest", "is_document_id"]
