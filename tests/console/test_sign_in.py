"""Sign-in under attack, for real: parallel guesses from one address against the throttle,
and a flood of sign-ins beside an admin's API calls (argon2 on its own pool)."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from omnicore.console.throttle import LoginThrottle
from tests.console.conftest import PASSWORD, Host
from tests.sandbox_fixtures import wait_for


def guess(host: Host, name: str, password: str, ready: threading.Barrier | None = None) -> int:
    with httpx.Client(base_url=host.url, timeout=60) as c:
        c.get("/login")
        if ready is not None:
            ready.wait()
        r = c.post("/login", data={"name": name, "password": password,
                                   "csrf": c.cookies["omnicore_login_csrf"]})
        return r.status_code


def test_thirty_parallel_guesses_from_one_address_get_five_tries(host: Host) -> None:
    ready = threading.Barrier(30)
    with ThreadPoolExecutor(30) as pool:
        codes = list(pool.map(lambda i: guess(host, "admin", f"wrong-{i}", ready), range(30)))
    assert set(codes) <= {401, 429} and 1 <= codes.count(401) <= 5, codes


def test_parallel_guesses_at_many_names_share_the_addresss_five_tries(host: Host) -> None:
    ready = threading.Barrier(30)
    with ThreadPoolExecutor(30) as pool:
        codes = list(pool.map(lambda i: guess(host, f"user{i}", "wrong-password", ready),
                              range(30)))
    assert set(codes) <= {401, 429} and 1 <= codes.count(401) <= 5, codes


def test_right_passwords_do_not_use_up_the_addresss_tries(host: Host) -> None:
    # An office behind one address: every attempt is counted first, and a success gives it
    # back, so a day of sign-ins never locks the address.
    codes = [guess(host, name, PASSWORD) for _ in range(6) for name in ("admin", "viewer")]
    assert codes == [303] * 12
    assert guess(host, "viewer", "wrong-password") == 401


def test_a_sign_in_flood_does_not_slow_an_admin(host: Host, admin: httpx.Client,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # More sign-ins than the threads every other request shares (asyncio's default pool:
    # min(32, cores + 4)), each held at its password check by a gate and let through to the
    # real argon2 after: were passwords checked on that pool, the admin's calls below would
    # wait behind the flood until the gate opens, which it does only after them. A gate, not
    # a timing bound: argon2 beside the calls on a loaded machine made that flaky and slow.
    console = host.module.console
    assert console is not None
    auth = console.auth
    auth.throttle = LoginThrottle(free=1_000_000)  # every guess reaches its password check
    flood = min(32, (os.cpu_count() or 1) + 4) + 2
    gate = threading.Event()
    checked_on: list[str] = []
    check = auth.store.authenticate

    def held(name: str, password: str) -> object:
        checked_on.append(threading.current_thread().name)
        assert gate.wait(120)
        return check(name, password)

    monkeypatch.setattr(auth.store, "authenticate", held)

    def admin_calls(timeout: float) -> float:
        t0 = time.perf_counter()
        for path in ("/api/v1/tasks", "/api/v1/kv", "/api/v1/plugins"):  # the first two go
            r = admin.get(path, timeout=timeout)                       # through the pool
            assert r.status_code == 200, r.text                        # requests share
        return time.perf_counter() - t0

    baseline = admin_calls(30)
    with ThreadPoolExecutor(flood) as pool:
        try:
            guesses = [pool.submit(guess, host, "admin", f"guess-{i}") for i in range(flood)]
            # auth._waiting: sign-ins inside Auth.hashing, queued or at their check.
            wait_for(lambda: auth._waiting == flood, what="the whole flood at the password check")
            # The bound only catches "never" (a call stuck behind the flood): far above the
            # baseline, so load on the machine cannot fail it.
            admin_calls(max(5.0, 20 * baseline))
            assert checked_on and all(name.startswith("omnicore-passwords")
                                      for name in checked_on), checked_on
        finally:
            gate.set()
        codes = [g.result() for g in guesses]
    assert codes == [401] * flood
