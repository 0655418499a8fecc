"""Several hosts on one storage: who is running, who died, and handing a dead host's work on.

:class:`Membership` registers this host in the storage's instance table, heartbeats it,
reaps the instances that died (their job and workflow-step leases become due at once, in the
same transaction), carries an operator's drain request to this host, and tells the app
whether its storage answers (``/readyz``). With the embedded SQLite database there is one
host per data dir, so the table lists just it; with PostgreSQL it is the whole cluster.
"""

from __future__ import annotations

from omnicore.cluster.membership import ClusterSettings, Membership

__all__ = ["ClusterSettings", "Membership"]
