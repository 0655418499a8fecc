"""jobs.retry.RetryPolicy: exponential backoff with full jitter, capped; dead after the last."""

from __future__ import annotations

import pytest

from omnicore.jobs import RetryPolicy


def test_the_cap_doubles_per_attempt_up_to_max_backoff() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_ms=100, max_backoff_ms=1000)
    assert [policy.cap_ms(n) for n in range(1, 7)] == [100, 200, 400, 800, 1000, 1000]


def test_full_jitter_stays_between_now_and_the_cap() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_ms=1000, max_backoff_ms=60_000)
    waits = [policy.retry_at(3, 100.0) - 100.0 for _ in range(500)]  # type: ignore[operator]
    assert all(0.0 <= w <= 4.0 for w in waits)
    assert max(waits) - min(waits) > 1.0  # spread out, not in step


def test_without_jitter_the_wait_is_the_cap() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_ms=500, jitter=False)
    assert policy.retry_at(1, 10.0) == 10.5
    assert policy.retry_at(2, 10.0) == 11.0


@pytest.mark.parametrize("attempt", [3, 4, 99])
def test_the_last_attempt_and_any_later_one_is_dead(attempt: int) -> None:
    assert RetryPolicy(max_attempts=3).retry_at(attempt, 0.0) is None
