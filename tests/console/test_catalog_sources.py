"""``PUT /api/v1/catalog/{name}`` with ``source: oci://...`` (the host pulls it, a real
registry) and with ``signatures`` beside the module: kept with the version, shown."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from omnicore.oci import BlobSignature, generate_key, load_private_key, push, signature_to_json
from omnicore.oci.signing import sign_blob
from tests.console.conftest import Host
from tests.host_fixtures import echo_wasm
from tests.registryserver import Registry


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    server = Registry.start()
    try:
        yield server
    finally:
        server.stop()


def test_publish_by_source_and_with_signatures(host: Host, admin: httpx.Client,
                                                registry: Registry) -> None:
    wasm = echo_wasm("pulled", "1.0.0")
    pushed = push(wasm, registry.ref("rest/pulled:1"), sidecar={"config": {"k": "v"}})
    r = admin.put("/api/v1/catalog/pulled", json={"source": registry.ref("rest/pulled:1")})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["digest"] == pushed.module_digest and doc["source"] == str(pushed.reference)
    assert doc["sidecar"] == {"config": {"k": "v"}} and doc["signatures"] == 0
    # 'source' is a reference, and not beside a module.
    r = admin.put("/api/v1/catalog/pulled", json={"source": "/etc/passwd"})
    assert r.status_code == 422, r.text

    key = load_private_key(generate_key()[0])
    other = echo_wasm("pulled", "2.0.0")
    sig = BlobSignature(base64.b64decode(sign_blob(key, other)))
    r = admin.put("/api/v1/catalog/pulled", json={
        "module": base64.b64encode(other).decode(), "signatures": [signature_to_json(sig)]})
    assert r.status_code == 201, r.text
    assert r.json()["signatures"] == 1 and r.json()["source"] is None
    r = admin.put("/api/v1/catalog/pulled", json={
        "module": base64.b64encode(other).decode(), "signatures": [{"kind": "nope"}]})
    assert r.status_code == 422 and "signatures" in r.text
