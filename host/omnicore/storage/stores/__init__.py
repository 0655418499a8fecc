"""Each store's logic and SQL, written once over :class:`~omnicore.storage.backend.Backend`.

``leases`` the leased queue's SQL (jobs and workflow steps); ``jobs`` the job queue and
schedules; ``kv``; ``events`` the event log; ``workflows``; ``memory``; ``vectors``;
``secrets``; ``audit``; ``users`` the console's accounts; ``instances`` the hosts sharing the
database; ``settings`` the operator's plugin settings; ``root`` the storage that builds them.
A module here imports no driver and no backend
package, and touches no private name of a backend (tests/storage/test_stores.py).
"""
