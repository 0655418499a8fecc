"""The durable job service behind ``app.jobs``: enqueue, workers, schedules, retries.

``service`` (:class:`Jobs`, the one enqueue door and the operators' API), ``worker`` (one
delivery: call, then finish or fail), ``retry`` (the policy as data), ``schedules`` (every /
cron), ``events`` (``job.*`` on the bus), ``metrics`` (Prometheus), ``plugins`` (the seam to
the plugin host). The workers themselves are :class:`omnicore.core.workers.LeasedWorkers`.
"""

from __future__ import annotations

from omnicore.jobs.events import (
    JobDead,
    JobFailed,
    JobQueued,
    JobStarted,
    JobSucceeded,
    at_hops,
    current_hops,
)
from omnicore.jobs.metrics import JobMetrics
from omnicore.jobs.plugins import JobPlugins
from omnicore.jobs.retry import RetryPolicy
from omnicore.jobs.schedules import Schedule, check_manifest, manifest_schedules, parse_schedule
from omnicore.jobs.service import Jobs, KeyReused

__all__ = ["JobDead", "JobFailed", "JobMetrics", "JobPlugins", "JobQueued", "JobStarted",
           "JobSucceeded", "Jobs", "KeyReused", "RetryPolicy", "Schedule", "at_hops",
           "check_manifest", "current_hops", "manifest_schedules", "parse_schedule"]
