"""``/api/v1/instances`` and draining, on a real console (SQLite: one host per data dir)."""

from __future__ import annotations

import time

import httpx

from tests.console.conftest import Host


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
    deadline = time.monotonic() + 10
    while not cluster.draining:  # carried by the next heartbeat
        assert time.monotonic() < deadline, "the drain never reached the host"
        time.sleep(0.05)
