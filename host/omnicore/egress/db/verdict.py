"""The verdict on one plugin statement, shared by the dialects' judges (statements.py)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TX", "Verdict", "widen_hint"]

TX = "opens or ends a transaction: use the API's begin, commit and rollback"
_SPEC = "(specs/abi.md §4.10, Statements)"


def widen_hint(kind: str) -> str:
    return f"connectors.<connector>.statements (allow: [{kind}])"


@dataclass(frozen=True, slots=True)
class Verdict:
    """``reason`` is None when the statement may run; ``kind`` is the statement's kind (its
    parse node or leading keyword); ``widened``: it runs only because the operator allowed
    the kind (connectors.<name>.statements); ``read_only``: refused as a write on a
    read-only connector; ``invalid``: not one statement of the server's grammar (INVALID,
    not DENIED)."""

    reason: str | None
    kind: str
    widened: bool = False
    read_only: bool = False
    invalid: bool = False

    @property
    def status(self) -> str:
        """The §4.10 status of a refusal."""
        return "INVALID" if self.invalid else "DENIED"

    def message(self, connector: str) -> str:
        """The §4.10 DENIED text of a refusal, for ``connector``."""
        reason = (self.reason or "").replace("<connector>", connector)
        if self.read_only:
            return f"connector {connector} is read-only: {reason} {_SPEC}"
        return f"connector {connector}: {reason} {_SPEC}"
