"""The REST API's publish (``PUT /api/v1/catalog/{name}``) holds a sidecar to the signatures as
the CLI does (issue 61, deliverable 2): its ``signatures`` list carries a sidecar file's
signature (``cosign-sidecar``), ``unsigned_sidecar`` is the audited override, and the answer
says what covers the sidecar and whether the module is older than the one in force."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from omnicore.accounts.audit import Actor
from omnicore.app import OmniApp
from omnicore.console.catalog import _signatures, answer, publication
from omnicore.console.errors import ApiError
from omnicore.oci import BlobSignature, SignatureRefused, generate_key, load_private_key
from omnicore.oci.signing import (
    SidecarSignature,
    sidecar_signature_to_json,
    sidecar_statement,
    sign_blob,
    signature_to_json,
)
from omnicore.plugins.catalog import digest_of
from tests.host_fixtures import echo_wasm

SIDECAR = b"limits:\n  timeout_ms: 999999\n"


def test_the_api_holds_a_sidecar_to_the_signatures(
        tmp_path: Path, start_host: Callable[..., OmniApp]) -> None:
    private, public = generate_key()
    (tmp_path / "ops.pub").write_bytes(public)
    key = load_private_key(private)
    app = start_host(plugins={"trust": {"keys": [str(tmp_path / "ops.pub")],
                                        "require": True, "allow_unsigned_sidecar": True}})
    by = Actor.web("admin", "127.0.0.1")
    wasm = echo_wasm("api-side", "1.0.0")
    module_sig = BlobSignature(base64.b64decode(sign_blob(key, wasm)))
    side_sig = SidecarSignature(SIDECAR, base64.b64decode(
        sign_blob(key, sidecar_statement(digest_of(wasm), "api-side", SIDECAR))))
    # The body's list, as the CLI sends it: module and sidecar signatures apart.
    module_sigs, sidecar_sigs = _signatures([signature_to_json(module_sig),
                                             sidecar_signature_to_json(side_sig)])
    assert module_sigs == [module_sig] and sidecar_sigs == [side_sig]
    with pytest.raises(ApiError):
        _signatures([{"kind": "cosign-sidecar", "sidecar": "!!", "signature": "x"}])
    evil = {"limits": {"timeout_ms": 999999}}
    with pytest.raises(SignatureRefused, match="no trusted key signed it"):
        publication(app, "api-side", wasm, evil, None, by, signatures=module_sigs)
    done = publication(app, "api-side", wasm, evil, None, by, signatures=module_sigs,
                       sidecar_signatures=sidecar_sigs)
    assert done.made and done.sidecar.startswith("its file signed by ops.pub")
    doc = answer(app, done)
    assert doc["sidecar_cover"] == done.sidecar and doc["hosts_live"] == 1
    # The override, admitted by this host's allow_unsigned_sidecar, audited on its own.
    done = publication(app, "api-side", wasm, {"config": {"x": 1}}, None, by,
                       signatures=module_sigs, unsigned_sidecar="INC-7 hotfix")
    assert done.override == "INC-7 hotfix"
    actions = [e.action for e in app.storage.audit.entries(limit=10)]
    assert actions[:2] == ["catalog.unsigned_sidecar", "catalog.publish"]
