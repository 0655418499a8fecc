"""``oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]``: where a plugin lives in a registry.

The grammar is the distribution spec's (a repository is lowercase path components, a tag up
to 128 characters); ``docker.io`` names are normalised as Docker does (``docker.io/x`` is
``registry-1.docker.io/library/x``). Without a tag or digest the tag is ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

__all__ = ["SCHEME", "Reference", "is_reference"]

SCHEME = "oci://"

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])"
                   r"(?::[0-9]{1,5})?$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def is_reference(text: str) -> bool:
    """Whether ``text`` is written as an OCI reference (``oci://...``), not a file."""
    return text.startswith(SCHEME)


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``registry`` is ``host[:port]`` as written; ``api_host`` the host
    the distribution API is reached at."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse ``oci://REGISTRY/REPO[:TAG][@sha256:HEX]``; ValueError says what is wrong."""
        if not is_reference(text):
            raise ValueError(f"{text[:200]!r} is not an OCI reference: write "
                             "oci://REGISTRY/REPOSITORY:TAG or ...@sha256:DIGEST")
        rest = text[len(SCHEME):]
        digest = None
        if "@" in rest:
            rest, digest = rest.rsplit("@", 1)
            if not _DIGEST.match(digest):
                raise ValueError(f"{text[:200]!r}: the digest must be sha256: and 64 lowercase "
                                 "hex digits")
        registry, slash, path = rest.partition("/")
        if not slash or not path:
            raise ValueError(f"{text[:200]!r} names no repository: write "
                             "oci://REGISTRY/REPOSITORY:TAG")
        tag = None
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            path, tag = path.rsplit(":", 1)
            if not _TAG.match(tag):
                raise ValueError(f"{text[:200]!r}: {tag[:130]!r} is not a tag (letters, digits, "
                                 "'_', '.', '-', at most 128, not starting with '.' or '-')")
        if not _HOST.match(registry):
            raise ValueError(f"{text[:200]!r}: {registry[:100]!r} is not a registry host[:port]")
        parts = path.split("/")
        bad = next((p for p in parts if not _COMPONENT.match(p)), None)
        if bad is not None or len(path) > 255:
            raise ValueError(f"{text[:200]!r}: the repository {path[:100]!r} must be lowercase "
                             "letters and digits separated by '.', '_', '-' or '/'")
        if registry in ("docker.io", "index.docker.io") and len(parts) == 1:
            path = f"library/{path}"
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, path, tag, digest)

    @property
    def api_host(self) -> str:
        return "registry-1.docker.io" if self.registry in ("docker.io", "index.docker.io") \
            else self.registry

    @property
    def hostname(self) -> str:
        """The host without its port (brackets of an IPv6 literal dropped)."""
        host = self.registry
        if host.startswith("["):
            return host[1:host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def ref(self) -> str:
        """What the manifests endpoint takes: the digest when known, else the tag."""
        return self.digest or self.tag or "latest"

    def at(self, digest: str) -> Reference:
        """This repository at ``digest`` (the tag kept for messages)."""
        return replace(self, digest=digest)

    def with_tag(self, tag: str) -> Reference:
        """This repository at ``tag`` (no digest)."""
        return replace(self, tag=tag, digest=None)

    def __str__(self) -> str:
        out = f"{SCHEME}{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out
