"""``omnicore plugins``: the group of commands about plugins as shared artifacts.

The group only: each command module adds its commands to :data:`plugins_group` when imported
(:mod:`omnicore.cli.registry`: ``push``, ``pull``, ``sign``, ``verify``, ``keygen``; the
catalog's ``publish``, ``versions``, ``rollback`` beside them). ``omnicore inspect`` and
``omnicore call`` stay top-level commands (:mod:`omnicore.cli.plugins`).
"""

from __future__ import annotations

from omnicore.cli.main import main

__all__ = ["plugins_group"]


@main.group("plugins")
def plugins_group() -> None:
    """Publish, pull, push, sign and roll back plugins (the catalog, OCI registries)."""
