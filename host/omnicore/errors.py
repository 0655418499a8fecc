"""Every error omnicore raises, in one hierarchy.

A dotted name says the module under ``omnicore`` to import it from
(``storage.errors.StorageError`` is ``omnicore.storage.errors.StorageError``); the rest are
here and in ``omnicore`` itself::

    OmniError
    ├── ConfigError              a config value is invalid (names key, value, source)
    ├── LifecycleError           an invalid state transition (double start, stop before start)
    ├── ModuleError              a module failed to start/stop (names the module and cause)
    ├── BuildError               an SDK build failed (names the plugin and toolchain)
    ├── Refused                  the host turned a request down; nothing was done
    │   ├── egress.refused.EgressRefused   an outbound request refused or failed on the way;
    │   │   │                  ``status`` is its plugin-facing word (DENIED, INVALID, QUOTA,
    │   │   │                  TOO_LARGE, UNAVAILABLE); users import it as egress.Refused
    │   │   └── egress.refused.SecretMissing      a secret the request needs is not set
    │   ├── jobs.KeyReused     an idempotency key came again with another job
    │   ├── capabilities.mcp.ClientRefused  a plugin's question to its MCP client was not
    │   │                  asked or answered; ``status``: DENIED, INVALID, TOO_LARGE, UNAVAILABLE
    │   ├── storage.errors.StorageRefused  a store turned a request down, nothing written
    │   │   │                  (also a StorageError); users import it as storage.Refused
    │   │   ├── storage.errors.QuotaExceeded      over a plugin's quota        -> QUOTA
    │   │   ├── storage.errors.ValueTooLarge      one value over its limit     -> TOO_LARGE
    │   │   ├── storage.errors.NotAnInteger       kv incr on a non-integer     -> INVALID
    │   │   ├── storage.memory_rows.BadMemory     a malformed memory or query  -> INVALID
    │   │   ├── storage.vector_rows.BadVector     a malformed vector or filter -> INVALID
    │   │   └── storage.vector_rows.UnknownCollection   no such collection     -> NOT_FOUND
    │   └── sandbox.HostTrap   a host function refused the guest's call (bad pointer, ABI
    │                          violation): the guest traps, its caller gets Trap
    ├── storage.errors.StorageError   the database failed (names the file): UNAVAILABLE
    │   ├── storage.errors.StorageFull     the disk is full: nothing written, reads work
    │   ├── storage.errors.DataDirLocked   another host holds the data dir (names its pid)
    │   ├── storage.errors.SchemaBehind    an older schema and storage.migrate false
    │   ├── storage.errors.SchemaAhead     a newer schema this host cannot run on
    │   └── storage.errors.StorageRefused  (drawn under Refused)
    ├── workflows.WorkflowError  anything about a workflow, its definition or its runs
    │   ├── workflows.DefinitionError    an invalid definition: every problem, path, line
    │   ├── workflows.ExpressionError    a ${{ }} expression does not compile or failed
    │   ├── workflows.InputInvalid       a run's inputs fail the input schema (names the field)
    │   ├── workflows.WorkflowNotFound   no workflow of that name is loaded
    │   ├── workflows.errors.FileChanged a definition file changed on disk since it was read
    │   └── workflows.RunStateError      the run or step's state does not allow the action
    ├── oci.RegistryError        an OCI registry could not give or take a plugin: unreachable,
    │   │                        too slow, a redirect loop, an error answer (names the reference)
    │   ├── oci.RegistryAuthError    it wants credentials that were not found, or refused them
    │   ├── oci.RegistryNotFound     no such repository, tag or digest there
    │   └── oci.ArtifactRefused      what it sent is not taken: a digest that does not match,
    │                            over a size cap, a malformed manifest, not a Wasm artifact
    └── PluginError              anything about one plugin (names plugin, handler)
        ├── PluginNotFound
        ├── HandlerNotFound
        ├── NeedsGrant           the plugin imports capabilities the operator did not grant
        ├── cli.remote.RemoteError   the running host answered the CLI with an error
        ├── plugins.catalog.VersionPinned   a rollback or removal of a catalog name pinned
        │                  to a version (omnicore plugins unpin first)
        ├── PluginLoadError      the file cannot become a plugin
        │   ├── InvalidModule    not wasm, fails validation, breaks ABI v1
        │   ├── UnsupportedAbiVersion
        │   ├── PluginCompiling  still compiling (a start, a drop): a moment later it works
        │   ├── oci.SignatureRefused   the trust policy (plugins.trust) refused the module:
        │   │                  unsigned, tampered, or signed by a key it does not trust
        │   ├── DuplicatePlugin
        │   ├── plugins.catalog.BadPublish   the plugin catalog will not take a module:
        │   │   │                  its digest is not the one announced, it is empty, its name
        │   │   │                  or sidecar would be refused
        │   │   ├── plugins.catalog.ModuleTooLarge   over catalog.max_module_bytes
        │   │   └── plugins.catalog.OlderModule   older than the version in force, under
        │   │                      catalog.refuse_older
        │   └── plugins.convergence.FetchFailed  the catalog's module could not be brought to
        │                      this host whole (gone from the store, or not its digest)
        └── PluginCallError      one call failed; the host keeps serving
            ├── GuestError       the handler returned an error (E bit); carries its message
            ├── Trap             the guest trapped; the instance was discarded
            ├── InvalidInput     the arguments do not fit the export's types (nothing ran)
            ├── CircuitOpen      too many consecutive failures; calls fail fast
            └── LimitExceeded    a sandbox limit was hit (names the limit and its value)
                ├── DeadlineExceeded
                ├── FuelExhausted
                ├── MemoryLimitExceeded
                ├── InputTooLarge
                └── OutputTooLarge

Every message says what happened, to which plugin/handler, and what to do about it.

Internal signals: caught inside omnicore and turned into one of the errors above (or a
REST answer) before anyone sees them, so they stay outside the tree; each says why where
it is defined::

    sandbox.fastcall.GuestFailure        a guest call's raw failure; sandbox.failures makes
                                         it a PluginCallError
    sandbox.wasmbin.WasmFormatError      a binary the parser cannot read; InvalidModule
    sandbox.component.values.WrongValue  an argument that does not fit its WIT type;
                                         InvalidInput
    sandbox.component.values.Unsupported a WIT type JSON cannot carry; the export is listed
                                         as unsupported
    workflows.connector.ConnectorFailed  a connector step's failed attempt; recorded on the
                                         run's step
    console.errors.ApiError              the console's REST error body
    storage.catalog_rows.Pinned          a catalog change refused: the name is pinned;
                                         plugins.catalog.VersionPinned
    console.live.TooManySubscribers      a live stream over the cap; HTTP 429
    yamlfile.DuplicateKeyError           a YAML key stated twice (a yaml.YAMLError); the
                                         reader's ConfigError or DefinitionError
    routes.answer.Answer                 a status a plugin's route answers at once (a
                                         refusal, a deadline); the HTTP answer
"""

from __future__ import annotations

__all__ = [  # noqa: RUF022 - listed in hierarchy order, like the tree above
    "OmniError",
    "ConfigError",
    "LifecycleError",
    "ModuleError",
    "BuildError",
    "Refused",
    "PluginError",
    "PluginNotFound",
    "HandlerNotFound",
    "NeedsGrant",
    "PluginLoadError",
    "InvalidModule",
    "UnsupportedAbiVersion",
    "DuplicatePlugin",
    "PluginCallError",
    "GuestError",
    "Trap",
    "InvalidInput",
    "CircuitOpen",
    "LimitExceeded",
    "DeadlineExceeded",
    "FuelExhausted",
    "MemoryLimitExceeded",
    "InputTooLarge",
    "OutputTooLarge",
]


class OmniError(Exception):
    """Base of every omnicore error."""


class ConfigError(OmniError):
    """A configuration value is missing, unknown or of the wrong type."""

    def __init__(self, message: str, *, key: str | None = None, value: object = None,
                 source: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.value = value
        self.source = source


class LifecycleError(OmniError):
    """An operation is not allowed in the current lifecycle state."""


class ModuleError(OmniError):
    """A module failed to start or stop."""

    def __init__(self, message: str, *, module: str | None = None) -> None:
        super().__init__(message)
        self.module = module


class BuildError(OmniError):
    """Building a plugin from source failed."""

    def __init__(self, message: str, *, plugin: str | None = None,
                 toolchain: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.toolchain = toolchain


class Refused(OmniError):
    """The host turned a request down (a policy, a quota, a malformed request; for an
    outbound request also a failure on the way): nothing was done. The one base of every
    refusal: egress's, storage's, a host function's."""


class PluginError(OmniError):
    """An error about one plugin; ``plugin`` and ``handler`` say which."""

    def __init__(self, message: str, *, plugin: str | None = None,
                 handler: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.handler = handler


class PluginNotFound(PluginError):
    """No plugin of that name is loaded."""


class HandlerNotFound(PluginError):
    """The plugin has no handler of that name."""


class NeedsGrant(PluginError):
    """The plugin imports capabilities the operator has not granted."""

    def __init__(self, message: str, *, plugin: str | None = None,
                 missing: tuple[str, ...] = ()) -> None:
        super().__init__(message, plugin=plugin)
        self.missing = missing


class PluginLoadError(PluginError):
    """The file could not become a plugin."""


class PluginCompiling(PluginLoadError):
    """The plugin's module is still being compiled (the host started, or its file changed,
    moments ago): the same call a moment later finds it. The console answers 503."""


class InvalidModule(PluginLoadError):
    """Not WebAssembly, fails validation, or breaks omnicore ABI v1."""


class UnsupportedAbiVersion(PluginLoadError):
    """The plugin targets an ABI version this host does not implement."""

    def __init__(self, message: str, *, plugin: str | None = None,
                 version: object = None) -> None:
        super().__init__(message, plugin=plugin)
        self.version = version


class DuplicatePlugin(PluginLoadError):
    """Another loaded plugin already has this name."""


class PluginCallError(PluginError):
    """One call failed. The host keeps serving."""


class GuestError(PluginCallError):
    """The handler returned an error; ``guest_message`` is the plugin's own text."""

    def __init__(self, message: str, *, plugin: str | None = None,
                 handler: str | None = None, guest_message: str = "") -> None:
        super().__init__(message, plugin=plugin, handler=handler)
        self.guest_message = guest_message


class Trap(PluginCallError):
    """The guest trapped (unreachable, out-of-bounds, stack overflow...)."""


class InvalidInput(PluginCallError):
    """The arguments do not fit the called export's WIT types; the guest never ran."""


class CircuitOpen(PluginCallError):
    """The plugin's circuit breaker is open after repeated failures."""


class LimitExceeded(PluginCallError):
    """A sandbox limit was hit; ``limit`` names it and ``value`` is its setting."""

    def __init__(self, message: str, *, plugin: str | None = None,
                 handler: str | None = None, limit: str = "", value: object = None) -> None:
        super().__init__(message, plugin=plugin, handler=handler)
        self.limit = limit
        self.value = value


class DeadlineExceeded(LimitExceeded):
    """The call ran past its wall-clock deadline."""


class FuelExhausted(LimitExceeded):
    """The call used all of its fuel."""


class MemoryLimitExceeded(LimitExceeded):
    """The instance needed more linear memory than the limit allows."""


class InputTooLarge(LimitExceeded):
    """The input is larger than ``max_input_bytes``."""


class OutputTooLarge(LimitExceeded):
    """The output is larger than ``max_output_bytes``."""
