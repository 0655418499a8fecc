"""Which runtime runs a plugin: one table entry per module ABI.

:data:`RUNTIMES` maps a module's ABI (``PluginModule.abi``: ``1`` for omnicore ABI v1,
``"extism"``, ``"component"``) to its :class:`RuntimeKind`: how the ABI's own manifest, if
it has one, folds into the operator's sidecar, and how a runtime is linked. The host looks
the kind up and never asks which one it holds: the Component Model's ``component`` is one
more entry. The Extism and component runtimes are imported when a plugin of their ABI is
linked: a host (or an ``omnicore call``) of native plugins never loads them, nor the egress
client and stores Extism's host functions reach.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from omnicore.errors import ConfigError, UnsupportedAbiVersion
from omnicore.plugins.settings import PluginSettings
from omnicore.plugins.sidecar import Sidecar
from omnicore.sandbox.capability import CapabilityRegistry
from omnicore.sandbox.compiled import CompiledPlugin
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.module import ABI_VERSION, PluginModule
from omnicore.sandbox.pluginlog import PluginLog
from omnicore.sandbox.runtime import PluginRuntime

__all__ = ["RUNTIMES", "Link", "Runtime", "RuntimeKind", "kind_of"]


class Runtime(Protocol):
    """What the plugin host needs of a linked plugin, whatever its ABI."""

    limits: Limits

    def call(self, handler: str, data: bytes) -> bytes:
        """Run ``handler`` on ``data``; raise the typed errors of :mod:`omnicore.errors`."""
        ...

    def close(self) -> None:
        """Release the instances (the host calls it once the last call has returned)."""
        ...


@dataclass(frozen=True, slots=True)
class Link:
    """Everything a runtime is linked from."""

    engine: SandboxEngine
    module: CompiledPlugin
    capabilities: CapabilityRegistry
    settings: PluginSettings
    log: PluginLog
    data_dir: Path | None
    #: What the kind's :attr:`RuntimeKind.layer` read beside the sidecar (Extism: its
    #: ``ExtismManifest``); None for a kind without a manifest of its own.
    abi_manifest: object | None
    #: The embedder's host functions for user imports (Extism's ``extism:host/user``).
    user_functions: Sequence[Any]


#: ``layer(module, path, sidecar) -> (sidecar, abi_manifest)``: the ABI's own manifest folded
#: into the operator's sidecar layer; ConfigError for settings the kind cannot take.
Layer = Callable[[CompiledPlugin, Path | None, Sidecar], tuple[Sidecar, object | None]]


def no_abi_manifest(module: CompiledPlugin, _path: Path | None, sidecar: Sidecar
                    ) -> tuple[Sidecar, object | None]:
    """The layer of a kind without a manifest of its own: Extism manifest keys are refused."""
    if sidecar.extism:
        key = next(iter(sidecar.extism))
        if key == "link":
            raise ConfigError(f"plugin '{module.name}' is a native omnicore plugin, and only "
                              "Extism plugins link modules by name (--link, the sidecar's "
                              "'link' table)", key=key, source=str(sidecar.path or ""))
        raise ConfigError(f"{sidecar.path}: '{key}' is an Extism manifest key, and "
                          f"plugin '{module.name}' is a native omnicore plugin (use "
                          "grants.http and limits)", key=key, source=str(sidecar.path))
    return sidecar, None


@dataclass(frozen=True, slots=True)
class RuntimeKind:
    """How plugins of one ABI are configured and linked."""

    #: Make the runtime; raises NeedsGrant for an ungranted import (the plugin then waits in
    #: ``needs-grant``), any other error fails the load.
    link: Callable[[Link], Runtime]
    layer: Layer = no_abi_manifest


def _native(link: Link) -> Runtime:
    assert isinstance(link.module, PluginModule)  # ABI 1 is a core module's
    s = link.settings
    return PluginRuntime(link.engine, link.module, link.capabilities, s.grants, s.config,
                         s.limits, log=link.log, data_dir=link.data_dir)


def _extism_layer(_module: CompiledPlugin, path: Path | None, sidecar: Sidecar
                  ) -> tuple[Sidecar, object | None]:
    # NAME.json and the sidecar's Extism keys become grants, config and limits under the
    # operator's own (specs/extism.md).
    from omnicore.extism import read_manifest

    manifest = read_manifest(path, sidecar.extism, sidecar.path)
    grants, config, limits = manifest.under(sidecar.grants, sidecar.config, sidecar.limits)
    return replace(sidecar, grants=grants, config=config, limits=limits), manifest


def _extism(link: Link) -> Runtime:
    from omnicore.extism import ExtismManifest, ExtismRuntime

    assert isinstance(link.module, PluginModule)  # an Extism plugin is a core module
    s = link.settings
    manifest = link.abi_manifest if isinstance(link.abi_manifest, ExtismManifest) \
        else ExtismManifest()
    return ExtismRuntime(link.engine, link.module, link.capabilities, s.grants, s.config,
                         s.limits, log=link.log, data_dir=link.data_dir,
                         functions=link.user_functions, max_var_bytes=manifest.max_var_bytes,
                         links=manifest.links)


def _component(link: Link) -> Runtime:
    from omnicore.sandbox.component import ComponentModule, ComponentRuntime

    assert isinstance(link.module, ComponentModule)
    s = link.settings
    return ComponentRuntime(link.engine, link.module, s.limits, log=link.log,
                            registry=link.capabilities, grants=s.grants, config=s.config,
                            data_dir=link.data_dir)


#: ``PluginModule.abi`` -> its kind.
RUNTIMES: dict[int | str, RuntimeKind] = {
    ABI_VERSION: RuntimeKind(_native),
    "extism": RuntimeKind(_extism, _extism_layer),
    # sandbox.component.COMPONENT_ABI, spelt out so the component runtime loads only when used
    "component": RuntimeKind(_component),
}


def kind_of(module: CompiledPlugin) -> RuntimeKind:
    """The kind that runs ``module``; UnsupportedAbiVersion for an ABI no entry serves."""
    kind = RUNTIMES.get(module.abi)
    if kind is None:
        raise UnsupportedAbiVersion(
            f"plugin '{module.name}' has ABI {module.abi!r}, and this host runs the ABIs "
            f"{', '.join(map(repr, RUNTIMES))}; rebuild it for one of them",
            plugin=module.name, version=module.abi)
    return kind
