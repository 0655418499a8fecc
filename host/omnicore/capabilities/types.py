"""The seam between the built-in capabilities and the app whose services they open onto.

A built-in that keeps app state has ``for_app(app)`` (:mod:`omnicore.capabilities.builtin`):
its capability over one of the app's services, with the app's ``capabilities.<name>``
defaults where it has limits. The app it is handed is the :class:`~omnicore.types.HostApp`
of the ``capabilities`` hook; :class:`AppServices` is that app with the services they read,
typed once here rather than as one Protocol per module (and the base of what the layer
above, ``workflows``, reads of it). The services are named for mypy only, so a host that
loads only ``kv`` does not import numpy or the egress client for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from omnicore.types import HostApp

if TYPE_CHECKING:
    from omnicore.egress import Egress
    from omnicore.egress.db import Databases
    from omnicore.jobs import Jobs
    from omnicore.storage import Storage
    from omnicore.storage.memory import MemoryStore
    from omnicore.storage.secrets import SecretStore
    from omnicore.storage.vectors import VectorStore
    from omnicore.subscriptions import Subscriptions

__all__ = ["AppServices"]


class AppServices(HostApp, Protocol):
    """What the built-in capabilities need of an app (``OmniApp`` has it): the host app of
    the hook (its config) and the services behind ``app.storage``, ``app.jobs``,
    ``app.egress`` and the rest."""

    @property
    def storage(self) -> Storage: ...

    @property
    def vectors(self) -> VectorStore: ...

    @property
    def memory(self) -> MemoryStore: ...

    @property
    def secrets(self) -> SecretStore: ...

    @property
    def jobs(self) -> Jobs: ...

    @property
    def subscriptions(self) -> Subscriptions: ...

    @property
    def egress(self) -> Egress: ...

    @property
    def databases(self) -> Databases: ...
