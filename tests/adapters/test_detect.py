from __future__ import annotations

from pathlib import Path

import pytest

from omnicore.adapters import cpu_quota, detect


def fake_root(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_local(tmp_path: Path) -> None:
    env = detect({}, root=fake_root(tmp_path, {"proc/1/cgroup": "0::/init.scope\n"}))
    assert env.kind == "local" and env.reasons == ()
    assert env.defaults["log"]["format"] == "text"


@pytest.mark.parametrize(("files", "reason"), [
    ({".dockerenv": ""}, "/.dockerenv exists"),
    ({"run/.containerenv": ""}, "/run/.containerenv exists"),
    ({"proc/1/cgroup": "12:cpu:/docker/abc123\n"}, "/proc/1/cgroup mentions docker"),
])
def test_container(tmp_path: Path, files: dict[str, str], reason: str) -> None:
    env = detect({}, root=fake_root(tmp_path, files))
    assert env.kind == "container" and reason in env.reasons
    assert env.defaults["log"]["format"] == "json"


def test_kubernetes_wins_over_container(tmp_path: Path) -> None:
    env = detect({"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
                 root=fake_root(tmp_path, {".dockerenv": ""}))
    assert env.kind == "kubernetes"
    assert env.reasons == ("KUBERNETES_SERVICE_HOST is set",)


def test_cloud_from_env_and_dmi(tmp_path: Path) -> None:
    env = detect({"AWS_EXECUTION_ENV": "AWS_ECS_EC2"}, root=tmp_path)
    assert (env.kind, env.provider) == ("cloud", "aws")
    root = fake_root(tmp_path / "gcp", {"sys/class/dmi/id/sys_vendor": "Google\n"})
    env = detect({}, root=root)
    assert (env.kind, env.provider) == ("cloud", "gcp")
    assert "on gcp" in env.describe()


def test_edge_only_from_config(tmp_path: Path) -> None:
    env = detect({}, root=fake_root(tmp_path, {".dockerenv": ""}), configured="edge")
    assert env.kind == "edge" and env.reasons == ("set in config",)
    assert env.defaults["workers"] <= 2
    with pytest.raises(ValueError, match="unknown environment 'mars'"):
        detect({}, root=tmp_path, configured="mars")


def test_cpu_quota_cgroup_v2_and_v1(tmp_path: Path) -> None:
    v2 = fake_root(tmp_path / "v2", {"sys/fs/cgroup/cpu.max": "50000 100000\n"})
    assert cpu_quota(v2) == 0.5
    unlimited = fake_root(tmp_path / "max", {"sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert cpu_quota(unlimited) >= 1
    v1 = fake_root(tmp_path / "v1", {"sys/fs/cgroup/cpu/cpu.cfs_quota_us": "100000\n",
                                     "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"})
    assert cpu_quota(v1) == 1.0
    env = detect({}, root=v2)
    assert env.cpus == 0.5 and env.defaults["workers"] == 1
    garbage = fake_root(tmp_path / "g", {"sys/fs/cgroup/cpu.max": "lots 0\n"})
    assert cpu_quota(garbage) >= 1
