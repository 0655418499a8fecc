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


# /proc/self/mountinfo as the kernel writes it (the fields up to the mount point, " - ", the
# file system type, its source and its options), from the machines each test names.
_PROC = "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
DOCKER = _PROC + (
    "612 530 0:52 / / rw,relatime master:300 - overlay overlay rw,lowerdir=/var/lib/docker/"
    "overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/1f/diff\n"
    "640 612 254:1 /var/lib/docker/containers/0123abcd/resolv.conf /etc/resolv.conf rw - ext4"
    " /dev/vda1 rw\n"
    "641 612 254:1 /var/lib/docker/containers/0123abcd/hostname /etc/hostname rw - ext4"
    " /dev/vda1 rw\n"
    "642 612 254:1 /var/lib/docker/containers/0123abcd/hosts /etc/hosts rw - ext4 /dev/vda1 rw\n")
# Docker on btrfs (no overlay), its data root a partition of its own.
DOCKER_BTRFS = _PROC + (
    "700 600 0:40 /subvol/abc / rw - btrfs /dev/sdb1 rw,subvol=/subvol/abc\n"
    "701 700 8:17 /containers/0123abcd/hosts /etc/hosts rw - btrfs /dev/sdb1 rw\n")
PODMAN_ROOTLESS = _PROC + (
    "1098 1006 0:94 / / rw,relatime - fuse-overlayfs fuse-overlayfs rw,user_id=0\n"
    "1120 1098 0:50 /containers/overlay-containers/abc/userdata/.containerenv"
    " /run/.containerenv rw,nosuid,nodev - tmpfs tmpfs rw,size=803964k\n")
KUBERNETES = _PROC + (
    "900 800 0:60 / / rw - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd."
    "snapshotter.v1.overlayfs/snapshots/9/fs\n"
    "910 900 259:1 /var/lib/kubelet/pods/5f0e/etc-hosts /etc/hosts rw - ext4 /dev/nvme0n1p1 rw\n")
# This kind of machine: a microVM whose disk was made from an image (its /.dockerenv too).
MICROVM = _PROC + (
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n")
# A machine that runs Docker: its containers' mounts are there, none at / or /etc.
DOCKER_HOST = _PROC + (
    "29 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "512 29 0:52 / /var/lib/docker/overlay2/1f/merged rw - overlay overlay rw,lowerdir=/var/lib/"
    "docker/overlay2/l/ABC,upperdir=/var/lib/docker/overlay2/1f/diff\n"
    "530 29 0:4 net:[4026532598] /run/docker/netns/1a2b rw shared:220 - nsfs nsfs rw\n")
# A live system: / is an overlay, of no engine's storage.
LIVE = _PROC + "30 1 0:27 / / rw - overlay overlay rw,lowerdir=/run/live/rootfs/fs.squashfs\n"
BARE_CGROUP = "0::/init.scope\n"
V1_ROOT_CGROUP = "".join(f"{i}:{c}:/\n" for i, c in enumerate(("cpu", "memory", "pids"), 1))


@pytest.mark.parametrize(("files", "environ", "reason"), [
    ({"proc/self/mountinfo": DOCKER, "proc/1/cgroup": "0::/\n", ".dockerenv": ""}, {},
     "/etc/hosts is mounted from /var/lib/docker/containers/0123abcd/hosts"),
    ({"proc/self/mountinfo": DOCKER}, {}, "/ is an overlay of docker storage"),
    ({"proc/self/mountinfo": DOCKER_BTRFS}, {},
     "/etc/hosts is mounted from /containers/0123abcd/hosts"),
    ({"proc/self/mountinfo": PODMAN_ROOTLESS, "run/.containerenv": ""}, {"container": "podman"},
     "container=podman is set"),
    ({"proc/self/mountinfo": PODMAN_ROOTLESS}, {}, "/run/.containerenv is mounted from "
     "/containers/overlay-containers/abc/userdata/.containerenv"),
    ({"proc/self/mountinfo": KUBERNETES}, {},
     "/etc/hosts is mounted from /var/lib/kubelet/pods/5f0e/etc-hosts"),
    ({"proc/self/mountinfo": KUBERNETES}, {}, "/ is an overlay of containerd storage"),
    ({"proc/1/environ": "PATH=/usr/bin\0container=lxc\0"}, {}, "PID 1 has container=lxc"),
    ({"proc/1/cgroup": "12:cpu:/docker/abc123\n"}, {}, "/proc/1/cgroup mentions docker"),
])
def test_container(tmp_path: Path, files: dict[str, str], environ: dict[str, str],
                   reason: str) -> None:
    env = detect(environ, root=fake_root(tmp_path, files))
    assert env.kind == "container" and reason in env.reasons, env.reasons
    assert env.defaults["log"]["format"] == "json"


@pytest.mark.parametrize("files", [
    # A microVM whose disk was made from a Docker image: /.dockerenv, and nothing else says
    # container (Issue 48: its Overview said "Environment: container").
    {"proc/self/mountinfo": MICROVM, "proc/1/cgroup": V1_ROOT_CGROUP, ".dockerenv": ""},
    {"proc/self/mountinfo": MICROVM, "proc/1/cgroup": BARE_CGROUP, "run/.containerenv": "",
     ".dockerenv": ""},
    {"proc/self/mountinfo": DOCKER_HOST, "proc/1/cgroup": BARE_CGROUP},
    {"proc/self/mountinfo": LIVE, "proc/1/cgroup": BARE_CGROUP},
    {"proc/self/mountinfo": MICROVM, "proc/1/environ": "PATH=/usr/bin\0container=\0"},
])
def test_a_machine_is_not_a_container_for_its_files_or_the_containers_it_runs(
        tmp_path: Path, files: dict[str, str]) -> None:
    env = detect({"PATH": "/usr/bin"}, root=fake_root(tmp_path, files))
    assert env.kind == "local", env.reasons
    assert env.defaults["log"]["format"] == "text"
    marker = [f for f in (".dockerenv", "run/.containerenv") if f in files]
    if marker:  # named, as what was not taken for evidence
        assert "a file system made from an image" in env.reasons[-1]
        assert all(f"/{f}" in env.reasons[-1] for f in marker)
    else:
        assert env.reasons == ()


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
