"""When a failed job runs again: the retry policy as data.

A job carries its own ``max_attempts`` and ``backoff_ms`` (from the plugin's grant or the
app's defaults); the service adds the cap. Full jitter (a uniform wait up to the exponential
cap) spreads the retries of many jobs that failed together instead of letting them hit a
recovering dependency in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` deliveries; before attempt ``n + 1`` wait up to
    ``min(max_backoff_ms, backoff_ms * 2 ** (n - 1))``, jittered when ``jitter``."""

    max_attempts: int = 5
    backoff_ms: int = 1000
    max_backoff_ms: int = 300_000
    jitter: bool = True

    def cap_ms(self, attempt: int) -> float:
        """The longest wait after attempt ``attempt`` (1-based) failed."""
        return float(min(self.max_backoff_ms, self.backoff_ms * 2 ** max(attempt - 1, 0)))

    def retry_at(self, attempt: int, now: float) -> float | None:
        """When to run again after attempt ``attempt`` failed at ``now``; None: it was the
        last one (the job is dead)."""
        if attempt >= self.max_attempts:
            return None
        cap = self.cap_ms(attempt)
        return now + (random.uniform(0, cap) if self.jitter else cap) / 1000
