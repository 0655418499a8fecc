"""Run unmodified Extism plugins beside native ones (specs/extism.md).

A module importing ``extism:host/env`` is an Extism plugin (``PluginModule.abi ==
"extism"``); the plugin host runs it on :class:`ExtismRuntime`: our own memory kernel
(``kernel.wat``, linked wasm-to-wasm), Extism's host functions on omnicore's capabilities,
Extism's call protocol, omnicore's grants and limits. Embedders add host functions for
``extism:host/user`` with :func:`host_fn`, shaped like the Extism Python SDK's.
"""

from omnicore.extism._manifest import SIDECAR_KEYS, ExtismManifest, parse_manifest, read_manifest
from omnicore.extism._runtime import ExtismRuntime
from omnicore.extism._user import CurrentPlugin, Memory, UserFunction, Val, ValType, host_fn

__all__ = ["SIDECAR_KEYS", "CurrentPlugin", "ExtismManifest", "ExtismRuntime", "Memory",
           "UserFunction", "Val", "ValType", "host_fn", "parse_manifest", "read_manifest"]
