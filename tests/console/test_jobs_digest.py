"""``POST /api/v1/jobs`` with a ``digest``: the job asks for that plugin version (only a
host serving it claims it: tests/jobs/test_job_digest.py); a digest no host could serve, one
that is not a digest, or one in a batch is refused naming it."""

from __future__ import annotations

from typing import Any

from tests.waiting import eventually


def test_post_jobs_takes_a_digest_and_refuses_a_bad_one(make_host: Any) -> None:
    host = make_host()
    admin = host.client(host.admin_token)
    served = "sha256:" + str(host.app.plugins.get("greeter-rust").sha256)
    r = admin.post("/api/v1/jobs", json={"plugin": "greeter-rust", "handler": "greet",
                                         "payload": {"name": "x"}, "digest": served})
    assert r.status_code == 201, r.text
    assert r.json()["digest"] == served
    eventually(lambda: admin.get("/api/v1/jobs?plugin=greeter-rust").json()["items"][0]
               ["digest"] == served, "the job listed with its digest")
    stranger = "sha256:" + "cd" * 32
    bad = admin.post("/api/v1/jobs", json={"plugin": "greeter-rust", "handler": "greet",
                                           "digest": stranger})
    assert bad.status_code == 404 and stranger in bad.json()["error"]["message"]
    bad = admin.post("/api/v1/jobs", json={"plugin": "greeter-rust", "handler": "greet",
                                           "digest": "v1"})
    assert bad.status_code == 422 and "'v1'" in bad.json()["error"]["message"]
    bad = admin.post("/api/v1/jobs", json={"plugin": "greeter-rust", "handler": "greet",
                                           "digest": 7})
    assert bad.status_code == 422
    batch = admin.post("/api/v1/jobs", json={"jobs": [
        {"plugin": "greeter-rust", "handler": "greet", "digest": served}]})
    assert batch.status_code == 422 and "on its own" in batch.json()["error"]["message"]
