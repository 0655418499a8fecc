"""The audit trail: who changed what, when and from where, for the console, the API and the CLI.

Every surface that changes something calls :func:`record` once the change has happened, with
an :class:`Actor` (a signed-in user, an API token's user, or the CLI's operating-system user)
and a dotted verb (``grant.add``, ``config.set``, ``user.add``...). The entry lands in the
app's database (``storage.audit``), so every instance of a shared database sees one log.

Values are made safe before they are stored: a secret's value is never an entry's value (a
secret is recorded by name), and in config and grant options a key that names a secret
(``password``, ``token``...) has its value replaced by ``****``.

The API and the page that read the log are :mod:`omnicore.console.audit`; the console turns
a request into an :class:`Actor` (:func:`omnicore.console.base.actor`).
"""

from __future__ import annotations

import getpass
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omnicore.config.loader import is_secret_key

if TYPE_CHECKING:
    from omnicore.storage import Storage
    from omnicore.storage.audit_rows import AuditEntry

__all__ = ["HIDDEN", "VERBS", "Actor", "entry_doc", "record", "record_settings", "redact",
           "split_target"]

log = logging.getLogger("omnicore.console")

HIDDEN = "****"
#: The verb families, for the page's filter (a verb is ``family.what``).
VERBS = ("grant", "config", "limits", "plugin", "mcp", "kv", "secret", "user", "token", "task",
         "schedule", "event", "workflow", "memory", "vectors", "instance")
#: Targets that belong to no plugin are ``kind:id``.
KINDS = ("user:", "token:", "secret:", "task:", "run:", "instance:", "topic:", "connector:",
         "workflow:")


@dataclass(frozen=True)
class Actor:
    """Who made a change and from where (a client's address, or ``cli``)."""

    name: str
    origin: str | None

    @classmethod
    def web(cls, name: str, address: str | None, *, token: bool = False) -> Actor:
        """A user of the console or the API at client ``address`` (by an API token)."""
        return cls(name, f"{address or '?'}, API token" if token else address)

    @classmethod
    def cli(cls) -> Actor:
        """The operating-system user running an ``omnicore`` command on this machine."""
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (a container's random uid)
            name = "cli"
        return cls(name, "cli")

    def __str__(self) -> str:
        return self.name


def redact(value: Any) -> Any:
    """``value`` with every mapping's secret-named key masked, at any depth."""
    if isinstance(value, Mapping):
        return {str(k): HIDDEN if is_secret_key(str(k)) and v not in (None, "")
                else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def record(storage: Storage, by: Actor, verb: str, target: str | None, before: Any = None,
           after: Any = None) -> None:
    """Append one entry (values redacted). A change that happened is not undone when its
    entry cannot be written (a full disk): that is logged as an error instead."""
    try:
        storage.audit.append(by.name, verb, target, redact(before), redact(after), by.origin,
                             time.time())
    except Exception as exc:  # the change is made: say the trail missed it, do not fail it
        log.error("audit: could not record %s %s by %s: %s", verb, target, by.name, exc)


def record_settings(storage: Storage, by: Actor, plugin: str, before: Mapping[str, Any],
                    after: Mapping[str, Any]) -> None:
    """One entry for each thing a change of ``plugin``'s operator settings changed: a grant
    given or taken (``false`` or gone), config, limits, enabled, MCP tools."""
    was, now = dict(before.get("grants") or {}), dict(after.get("grants") or {})
    for cap in sorted(was.keys() | now.keys()):
        if was.get(cap) != now.get(cap):
            taken = now.get(cap) in (None, False)
            record(storage, by, "grant.revoke" if taken else "grant.add", f"{plugin}/{cap}",
                   was.get(cap), None if taken else now.get(cap))
    for key, verb in (("config", "config.set"), ("limits", "limits.set"), ("mcp", "mcp.set")):
        if before.get(key) != after.get(key):
            record(storage, by, verb, plugin, before.get(key), after.get(key))
    if before.get("enabled") != after.get("enabled"):
        on = after.get("enabled") is not False
        record(storage, by, "plugin.enable" if on else "plugin.disable", plugin,
               before.get("enabled") is not False, on)


def split_target(target: str | None) -> tuple[str, str]:
    """``(plugin, capability-or-key)`` of an entry's target; ``("", target)`` for the
    targets that belong to no plugin (``user:ada``)."""
    if not target:
        return "", ""
    if target.startswith(KINDS):
        return "", target
    plugin, _, part = target.partition("/")
    return plugin, part


def entry_doc(entry: AuditEntry) -> dict[str, Any]:
    plugin, subject = split_target(entry.target)
    return {"id": entry.id, "at": entry.at,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.at)),
            "user": entry.actor, "verb": entry.action, "plugin": plugin, "subject": subject,
            "target": entry.target, "before": entry.before, "after": entry.after,
            "origin": entry.origin}
