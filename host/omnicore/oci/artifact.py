"""A plugin as an OCI artifact: the Wasm layout of the CNCF TAG-Runtime guidance.

What ``wkg``, Spin's and wasmCloud's OCI code (the ``oci-wasm`` crate) write and read, so a
module pushed here pulls there and the reverse (specs/registry.md §2):

* the manifest is an OCI image manifest (``application/vnd.oci.image.manifest.v1+json``);
* its config blob is ``application/vnd.wasm.config.v0+json``: ``created``, ``architecture``
  ``wasm``, ``os`` ``wasip1`` (a core module) or ``wasip2`` (a component, with its
  ``component.imports``/``exports``), ``layerDigests``;
* exactly one layer, ``application/wasm``: the module's bytes as they are. Its
  ``org.opencontainers.image.title`` annotation is the file name (``oras pull`` writes the
  layer under it).

omnicore's one addition is the plugin's sidecar (the publisher's requested grants, config,
limits, MCP exposure) as JSON in the manifest annotation ``dev.omnicore.plugin.sidecar``:
an annotation, not a second layer, because ``wkg`` and ``oci-wasm`` refuse an artifact of
more than one layer; and in the manifest, so a signature of the manifest covers it.

``created`` is ``$SOURCE_DATE_EPOCH`` or the epoch, never the clock: the same module and
sidecar always make the same manifest digest, so pushing them again keeps the signatures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from omnicore.core.jsoncodec import loads_object
from omnicore.oci.client import sha256_digest
from omnicore.sandbox import wasmbin

__all__ = ["CONFIG_MEDIA_TYPE", "LAYER_MEDIA_TYPE", "MANIFEST_MEDIA_TYPE", "MAX_SIDECAR_BYTES",
           "SIDECAR_ANNOTATION", "Artifact", "Descriptor", "WasmManifest", "build",
           "component_world", "read_manifest"]

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.wasm.config.v0+json"
LAYER_MEDIA_TYPE = "application/wasm"
SIDECAR_ANNOTATION = "dev.omnicore.plugin.sidecar"
TITLE = "org.opencontainers.image.title"
VERSION = "org.opencontainers.image.version"
CREATED = "org.opencontainers.image.created"
#: The sidecar is settings, not code: far below this.
MAX_SIDECAR_BYTES = 64 * 1024
#: A config blob is a few hundred bytes (a component's import list a few KiB).
MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Artifact:
    """A plugin laid out for a push: the config and manifest bytes, and the module."""

    module: bytes
    config: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        """The manifest's digest: what a reference by digest, and a signature, name."""
        return sha256_digest(self.manifest)

    @property
    def module_digest(self) -> str:
        return sha256_digest(self.module)


@dataclass(frozen=True)
class WasmManifest:
    """A pulled manifest, checked to be a Wasm artifact: its one layer, its config and the
    sidecar its annotation carries (None without one)."""

    layer: Descriptor
    config: Descriptor
    annotations: Mapping[str, str]
    sidecar: dict[str, Any] | None

    @property
    def title(self) -> str | None:
        """The file name the layer was pushed as, when it is a safe one."""
        title = self.layer.annotations.get(TITLE, "")
        ok = title and "/" not in title and "\\" not in title and title not in (".", "..") \
            and len(title) <= 200 and not title.startswith(".")
        return title if ok else None


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    seconds = int(epoch) if epoch.isdecimal() else 0
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(module: bytes, *, name: str, version: str | None = None,
          sidecar: Mapping[str, Any] | None = None) -> Artifact:
    """Lay ``module`` out as a Wasm artifact named ``name`` (its layer's title is
    ``name.wasm``), with ``sidecar`` in its annotation. ValueError when the sidecar is over
    :data:`MAX_SIDECAR_BYTES` or not JSON."""
    created = _created()
    layer_digest = sha256_digest(module)
    config: dict[str, Any] = {"created": created, "architecture": "wasm",
                              "os": "wasip1", "layerDigests": [layer_digest]}
    if wasmbin.is_component(module):
        config["os"] = "wasip2"
        world = component_world(module)
        if world is not None:
            config["component"] = {"exports": world[1], "imports": world[0]}
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    annotations = {CREATED: created}
    if version:
        annotations[VERSION] = version
    if sidecar:
        try:
            text = json.dumps(dict(sidecar), separators=(",", ":"), sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the sidecar holds a value JSON cannot carry ({exc})") from None
        if len(text.encode()) > MAX_SIDECAR_BYTES:
            raise ValueError(f"the sidecar is {len(text.encode())} bytes as JSON, over the "
                             f"{MAX_SIDECAR_BYTES} an artifact's annotation carries")
        annotations[SIDECAR_ANNOTATION] = text
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": Descriptor(CONFIG_MEDIA_TYPE, sha256_digest(config_bytes),
                             len(config_bytes)).to_json(),
        "layers": [Descriptor(LAYER_MEDIA_TYPE, layer_digest, len(module),
                              {TITLE: f"{name}.wasm"}).to_json()],
        "annotations": annotations,
    }
    return Artifact(module, config_bytes, json.dumps(manifest, separators=(",", ":")).encode())


def _descriptor(doc: Any, where: str) -> Descriptor:
    if not isinstance(doc, dict):
        raise ValueError(f"its {where} is not a descriptor object")
    media, digest, size = doc.get("mediaType"), doc.get("digest"), doc.get("size")
    if not isinstance(media, str) or not isinstance(digest, str) or \
            not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"its {where} lacks a mediaType, digest or size")
    if not (digest.startswith("sha256:") and len(digest) == 71
            and all(c in "0123456789abcdef" for c in digest[7:])):
        raise ValueError(f"its {where}'s digest {digest[:80]!r} is not sha256:<64 hex>")
    notes = doc.get("annotations") or {}
    if not isinstance(notes, dict) or not all(isinstance(v, str) for v in notes.values()):
        raise ValueError(f"its {where}'s annotations are not strings")
    return Descriptor(media, digest, size, notes)


def read_manifest(data: bytes, media_type: str = "") -> WasmManifest:
    """``data`` checked to be a Wasm artifact's manifest; ValueError says what it is instead
    (the caller names the reference)."""
    doc = loads_object(data, "its manifest")
    kind = doc.get("mediaType") or media_type
    if kind != MANIFEST_MEDIA_TYPE:
        what = {"application/vnd.oci.image.index.v1+json": "an image index",
                "application/vnd.docker.distribution.manifest.list.v2+json": "a manifest list",
                "application/vnd.docker.distribution.manifest.v2+json": "a Docker image"
                }.get(str(kind), repr(str(kind)[:100]))
        raise ValueError(f"it is {what}, not an OCI image manifest ({MANIFEST_MEDIA_TYPE}) "
                         "of a Wasm artifact")
    if doc.get("schemaVersion") != 2:
        raise ValueError("its manifest's schemaVersion is not 2")
    config = _descriptor(doc.get("config"), "config")
    if config.media_type != CONFIG_MEDIA_TYPE:
        raise ValueError(f"its config is {config.media_type[:100]!r}, not a Wasm artifact's "
                         f"{CONFIG_MEDIA_TYPE} (a container image or another artifact?)")
    layers = doc.get("layers")
    if not isinstance(layers, list) or len(layers) != 1:
        count = len(layers) if isinstance(layers, list) else 0
        raise ValueError(f"it has {count} layers; a Wasm artifact has exactly one")
    layer = _descriptor(layers[0], "layer")
    if layer.media_type != LAYER_MEDIA_TYPE:
        raise ValueError(f"its layer is {layer.media_type[:100]!r}, not {LAYER_MEDIA_TYPE}")
    notes = doc.get("annotations") or {}
    if not isinstance(notes, dict) or not all(isinstance(v, str) for v in notes.values()):
        raise ValueError("its annotations are not strings")
    sidecar = None
    text = notes.get(SIDECAR_ANNOTATION)
    if text is not None:
        if len(text.encode()) > MAX_SIDECAR_BYTES:
            raise ValueError(f"its sidecar annotation is over {MAX_SIDECAR_BYTES} bytes")
        sidecar = loads_object(text, f"its {SIDECAR_ANNOTATION} annotation")
    return WasmManifest(layer, config, notes, sidecar)


def check_config(data: bytes, manifest: WasmManifest) -> dict[str, Any]:
    """The config blob, checked to name the layer it travels with."""
    doc = loads_object(data, "its config blob")
    digests = doc.get("layerDigests")
    if digests and digests != [manifest.layer.digest]:
        raise ValueError("its config's layerDigests do not name its layer")
    return doc


# ---- a component's world, for the config's `component` field --------------------------

_IMPORT, _EXPORT = 10, 11


def component_world(wasm: bytes) -> tuple[list[str], list[str]] | None:
    """The names a component imports and exports at its top level (``wasi:cli/stdout@0.2.0``,
    ``omnicore:plugin/handlers``...), read from its binary; None when the binary uses an
    encoding this reader does not know (the config then goes without them)."""
    imports: list[str] = []
    exports: list[str] = []
    try:
        for sid, start, end in wasmbin.sections(wasm):
            if sid == _IMPORT:
                _names(wasm, start, end, imports, export=False)
            elif sid == _EXPORT:
                _names(wasm, start, end, exports, export=True)
    except (wasmbin.WasmFormatError, IndexError, ValueError):
        return None
    return imports, exports


def _names(data: bytes, pos: int, end: int, out: list[str], *, export: bool) -> None:
    count, pos = wasmbin.read_uleb(data, pos)
    for _ in range(count):
        if data[pos] != 0x00:  # a name with a version suffix or URL: an older encoding
            raise ValueError("name encoding")
        size, pos = wasmbin.read_uleb(data, pos + 1)
        out.append(data[pos:pos + size].decode("utf-8"))
        pos += size
        if export:
            sort = data[pos]
            pos += 2 if sort == 0x00 else 1
            _, pos = wasmbin.read_uleb(data, pos)  # the index
            has_type = data[pos]
            pos += 1
            if has_type == 0x01:
                pos = _externdesc(data, pos)
            elif has_type != 0x00:
                raise ValueError("export type")
        else:
            pos = _externdesc(data, pos)
        if pos > end:
            raise ValueError("past the section")


def _externdesc(data: bytes, pos: int) -> int:
    kind = data[pos]
    pos += 1
    if kind == 0x00:  # a core module: 0x11 and its type
        pos += 1
    elif kind in (0x02, 0x03):  # a value or type bound: a tag, then an index or type
        tag = data[pos]
        pos += 1
        if kind == 0x03 and tag == 0x01:  # (sub resource)
            return pos
    elif kind not in (0x01, 0x04, 0x05):
        raise ValueError("externdesc")
    _, pos = wasmbin.read_uleb(data, pos)
    return pos
