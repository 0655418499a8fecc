"""Accounts and the audit trail: the rules the console, the API and the CLI share.

They sit below the surfaces (over :mod:`omnicore.storage`), so ``omnicore users`` and the
console's sign-in apply one set of rules, and the CLI imports nothing of the console.
:mod:`~omnicore.accounts.users` holds users, tokens, sessions and setup links (argon2);
:mod:`~omnicore.accounts.audit` the trail of changes. Nothing is re-exported here: a CLI
command that records a change must not pay for argon2.
"""

__all__: list[str] = []
