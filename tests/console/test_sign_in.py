"""Sign-in under attack, for real: parallel guesses from one address against the throttle,
and a flood of sign-ins beside an admin's API calls (argon2 on its own pool)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from omnicore.console.throttle import LoginThrottle
from tests.console.conftest import PASSWORD, Host


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


def test_a_sign_in_flood_does_not_slow_an_admin(host: Host, admin: httpx.Client) -> None:
    # Every guess reaches argon2 here (a throttle that never says no), as guesses from many
    # addresses would: 200 of them, 20 at a time.
    assert host.module.console is not None
    host.module.console.auth.throttle = LoginThrottle(free=1_000_000)
    done = threading.Event()
    codes: list[int] = []

    def flood() -> None:
        with ThreadPoolExecutor(20) as pool:
            codes.extend(pool.map(lambda i: guess(host, "admin", f"guess-{i}"), range(200)))
        done.set()

    attacker = threading.Thread(target=flood)
    attacker.start()
    latencies = []
    started = time.monotonic()
    while not done.is_set():
        for path in ("/api/v1/tasks", "/api/v1/kv", "/api/v1/plugins"):  # the first two go
            t0 = time.perf_counter()                                   # through the thread
            r = admin.get(path)                                        # pool requests share
            latencies.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
        time.sleep(0.05)
    attacker.join()
    flood_s = time.monotonic() - started
    assert codes == [401] * 200
    assert len(latencies) >= 6 and flood_s > 1.0  # the calls really ran beside the flood
    assert max(latencies) < 1.0, (sorted(latencies)[-5:], flood_s)
