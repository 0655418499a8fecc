"""``/api/v1/instances`` and draining, on a real console (SQLite: one host per data dir)."""

from __future__ import annotations

import time

import httpx

from omnicore.console.instances import version
from tests.console.conftest import Host
from tests.waiting import eventually


def test_the_registry_lists_this_host_as_info_names_it(host: Host, admin: httpx.Client) -> None:
    info = admin.get("/api/v1/info").json()
    body = admin.get("/api/v1/instances").json()
    (me,) = body["items"]
    assert me["runtime_id"] == info["runtime_id"] == host.app.runtime_id
    assert me["this"] is True and me["draining"] is False
    assert me["console_url"] == host.url
    assert time.time() - me["heartbeat_at"] < 10
    assert me["jobs_held"] == 0 and me["version"]
    page = admin.get("/instances")
    assert page.status_code == 200 and host.app.runtime_id in page.text


def test_a_viewer_reads_but_only_an_admin_drains(host: Host) -> None:
    viewer = host.client(host.viewer_token)
    assert viewer.get("/api/v1/instances").status_code == 200
    r = viewer.post(f"/api/v1/instances/{host.app.runtime_id}/drain")
    assert r.status_code == 403
    assert host.app.storage.instances.all()[0].draining is False
    assert host.client().get("/api/v1/instances").status_code == 401


def test_draining_an_unknown_instance_is_a_404(admin: httpx.Client) -> None:
    r = admin.post("/api/v1/instances/rt-nobody/drain")
    assert r.status_code == 404 and "rt-nobody" in r.json()["error"]["message"]


def test_a_drained_host_stops_claiming_and_its_flag_reaches_it(host: Host,
                                                               admin: httpx.Client) -> None:
    r = admin.post(f"/api/v1/instances/{host.app.runtime_id}/drain")
    assert r.status_code == 202 and r.json() == {"runtime_id": host.app.runtime_id,
                                                  "draining": True}
    cluster = host.app.cluster
    assert cluster is not None
    # Carried by the next heartbeat.
    eventually(lambda: cluster.draining, "the drain flag on the host")


def test_a_dead_host_is_listed_as_lost_with_its_reaper_and_the_jobs_it_handed_on(
        host: Host, admin: httpx.Client) -> None:
    from omnicore.storage import JobSpec
    from omnicore.storage.instance_rows import Instance

    storage = host.app.storage
    now = time.time()
    job = storage.queue.add(JobSpec("nobody", "h", b"x", now + 3600))
    storage.instances.register(Instance("rt-gone", "box-2", 77, "0.1.0", now - 60, now - 30))
    storage.backend.write_one("UPDATE jobs SET state='running', owner='rt-gone', "  # type: ignore[attr-defined]
                              "lease_until=? WHERE id=?", (now + 3600, job))
    me = host.app.runtime_id
    before = version(host.app)
    assert storage.instances.reap(me, now, 3.0) == ["rt-gone"]
    # The page's stream sees the reap: its version moves, and console.js fetches the page.
    assert version(host.app) != before and version(host.app).endswith("|rt-gone")
    (lost,) = admin.get("/api/v1/instances").json()["lost"]
    assert lost["runtime_id"] == "rt-gone" and lost["reaped_by"] == me
    assert lost["jobs"] == [job] and lost["steps"] == []
    # Its last beat: the time it registered with, moved on by what that write waited.
    assert 0 <= lost["heartbeat_at"] - (now - 30) <= time.time() - now
    page = admin.get("/instances").text
    assert "Lost in the last 24 h" in page and "rt-gone" in page and f"job {job}" in page
    assert '&version=instances"' in page  # its live stream asks for the version
