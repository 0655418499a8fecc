"""Plugins in OCI registries, and the signatures that say who vouches for them.

::

    reference.py  oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]
    auth.py       credentials (Docker config, helpers) and the Basic/Bearer challenge
    client.py     the distribution API: manifests and blobs, bounded and digest-checked
    artifact.py   the Wasm artifact layout (CNCF TAG-Runtime; what wkg, Spin, wasmCloud read)
    signing.py    cosign's key-based signatures: keys, payloads, the .sig tag, sign-blob
    trust.py      plugins.trust and verify(digest, signatures, policy): the one check
    transfer.py   push, pull, sign, verify_ref: what the CLI and the catalog call
    errors.py     RegistryError and its kinds, SignatureRefused

The layout and the API are specified in specs/registry.md; what signatures guarantee in
specs/security.md ("Signed plugins").
"""

from omnicore.oci.artifact import (
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    SIDECAR_ANNOTATION,
)
from omnicore.oci.auth import Credentials
from omnicore.oci.client import Options
from omnicore.oci.errors import (
    ArtifactRefused,
    RegistryAuthError,
    RegistryError,
    RegistryNotFound,
    SignatureRefused,
)
from omnicore.oci.reference import Reference, is_reference
from omnicore.oci.signing import (
    BlobSignature,
    OciSignature,
    generate_key,
    load_private_key,
    signature_from_json,
    signature_to_json,
)
from omnicore.oci.transfer import Pulled, Pushed, Signed, pull, push, sign, verify_ref
from omnicore.oci.trust import TrustedKey, TrustPolicy, Verdict, verify

__all__ = [
    "CONFIG_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "SIDECAR_ANNOTATION",
    "ArtifactRefused",
    "BlobSignature",
    "Credentials",
    "OciSignature",
    "Options",
    "Pulled",
    "Pushed",
    "Reference",
    "RegistryAuthError",
    "RegistryError",
    "RegistryNotFound",
    "SignatureRefused",
    "Signed",
    "TrustPolicy",
    "TrustedKey",
    "Verdict",
    "generate_key",
    "is_reference",
    "load_private_key",
    "pull",
    "push",
    "sign",
    "signature_from_json",
    "signature_to_json",
    "verify",
    "verify_ref",
]
