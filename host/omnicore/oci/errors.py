"""What can go wrong between omnicore and an OCI registry, and with a plugin's signatures.

Drawn in :mod:`omnicore.errors`::

    RegistryError           a registry could not give or take a plugin: unreachable, too slow
    │                       (registry.timeout_s), a redirect loop, an error answer
    ├── RegistryAuthError   the registry wants credentials it was not given, or refused them
    ├── RegistryNotFound    no such repository, tag or digest there
    └── ArtifactRefused     what it sent is not taken: a digest that does not match, over a
                            size cap, a malformed manifest, not a Wasm artifact
    PluginLoadError
    └── SignatureRefused    the trust policy (plugins.trust) refused the module: unsigned,
                            tampered, or signed by a key it does not trust

Both refusals are also :class:`~omnicore.errors.Refused` (the one base of every refusal).
Every message is one line naming the reference (and the digest and key for a signature).
"""

from __future__ import annotations

from omnicore.errors import OmniError, PluginLoadError, Refused

__all__ = ["ArtifactRefused", "RegistryAuthError", "RegistryError", "RegistryNotFound",
           "SignatureRefused"]


class RegistryError(OmniError):
    """An OCI registry could not give or take a plugin; ``reference`` says which."""

    def __init__(self, message: str, *, reference: str | None = None) -> None:
        super().__init__(message)
        self.reference = reference


class RegistryAuthError(RegistryError):
    """The registry asked for credentials that were not found, or refused the ones sent."""


class RegistryNotFound(RegistryError):
    """The registry has no such repository, tag or digest."""


class ArtifactRefused(RegistryError, Refused):
    """What the registry sent is not taken: a wrong digest, over a cap, malformed, or not a
    Wasm artifact (specs/registry.md). Also a :class:`~omnicore.errors.Refused`."""


class SignatureRefused(PluginLoadError, Refused):
    """The trust policy refused a module: no signature by a trusted key verifies it (also a
    :class:`~omnicore.errors.Refused`).
    ``digest`` is the module's, ``keys`` the fingerprints of the keys that signed it."""

    def __init__(self, message: str, *, plugin: str | None = None, digest: str = "",
                 keys: tuple[str, ...] = ()) -> None:
        super().__init__(message, plugin=plugin)
        self.digest = digest
        self.keys = keys
