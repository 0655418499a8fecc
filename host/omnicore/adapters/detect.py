"""Detect the environment (local, container, kubernetes, cloud VM, edge) and its defaults.

Detection reads only local facts: environment variables and a few files under ``root``
(``/proc/self/mountinfo``, ``/proc/1/cgroup``, the cgroup CPU quota, DMI vendor strings). It
never touches the network, so it is instant and safe at import time of a CLI. ``edge`` cannot
be detected; the operator sets ``environment: edge`` in config.

A container is what its engine did to this process, not what its files say: ``container=`` in
the environment (podman, LXC, systemd-nspawn), ``/etc/hosts``, ``/etc/hostname``,
``/etc/resolv.conf`` or ``/run/.containerenv`` mounted from an engine's storage, a root file
system that is an overlay of it, or PID 1 in an engine's cgroup. ``/.dockerenv`` and
``/run/.containerenv`` as plain files are no evidence: they stay in a file system made from an
image (``docker export`` onto a VM's disk, as CI sandboxes and microVMs are), with no container
around; they are named in the reasons of a ``local`` answer.

This module imports nothing from omnicore: config uses it to build its adapter layer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "Environment", "cpu_quota", "detect"]

KINDS = ("local", "container", "kubernetes", "cloud", "edge")

# (environment variable, provider) pairs that only exist on a cloud provider's machines.
_CLOUD_ENV = (
    ("AWS_EXECUTION_ENV", "aws"),
    ("ECS_CONTAINER_METADATA_URI_V4", "aws"),
    ("AWS_REGION", "aws"),
    ("GOOGLE_CLOUD_PROJECT", "gcp"),
    ("GCE_METADATA_HOST", "gcp"),
    ("WEBSITE_INSTANCE_ID", "azure"),
    ("AZURE_REGION", "azure"),
    ("FLY_APP_NAME", "fly"),
    ("DIGITALOCEAN_REGION", "digitalocean"),
)
_DMI_VENDORS = (
    ("amazon", "aws"),
    ("google", "gcp"),
    ("microsoft corporation", "azure"),
    ("digitalocean", "digitalocean"),
    ("hetzner", "hetzner"),
    ("openstack", "openstack"),
)
_CONTAINER_CGROUP_MARKS = ("docker", "kubepods", "containerd", "lxc", "libpod", "crio")
# Words in the source path of an engine's mounts (its storage: /var/lib/docker/containers/ID,
# .../containers/storage/overlay-containers/ID/userdata, /var/lib/kubelet/pods/UID, ...).
_ENGINE_MARKS = ("docker", "containers", "containerd", "kubelet", "libpod", "lxc", "crio",
                 "podman")
# The files an engine mounts into each container it starts.
_ENGINE_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv")
# Left in a file system made from an image: named, never taken as evidence alone.
_IMAGE_FILES = ("/.dockerenv", "/run/.containerenv")


@dataclass(frozen=True)
class Environment:
    """What :func:`detect` found: the kind, why it thinks so, and the defaults it supplies."""

    kind: str
    reasons: tuple[str, ...]
    cpus: float
    provider: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: ``container (container=podman is set), 2 CPUs``."""
        why = "; ".join(self.reasons) or "no hints"
        prov = f" on {self.provider}" if self.provider else ""
        return f"{self.kind}{prov} ({why}), {self.cpus:g} CPUs"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _engine_mounts(mountinfo: str) -> list[str]:
    """Why ``mountinfo`` (``/proc/self/mountinfo``) is a container's: its root an overlay of an
    engine's storage, and the first of its engine-mounted files (in _ENGINE_FILES' order)."""
    root: list[str] = []
    files: dict[str, str] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        source_root, point = fields[3], fields[4]
        after = line.split(" - ", 1)[1].split()
        fstype, options = (after[0], after[2] if len(after) > 2 else "") if after else ("", "")
        if point in _ENGINE_FILES and any(m in source_root for m in _ENGINE_MARKS):
            files.setdefault(point, f"{point} is mounted from {source_root}")
        elif point == "/" and "overlay" in fstype:
            mark = next((m for m in _ENGINE_MARKS if m in options), None)
            if mark:
                root = [f"/ is an {fstype} of {mark} storage"]
    return root + [files[f] for f in _ENGINE_FILES if f in files][:1]


def _container_variable(env: Mapping[str, str], root: Path) -> str | None:
    """``container=`` of this process or of PID 1 (set by podman, LXC, systemd-nspawn)."""
    if env.get("container"):
        return f"container={env['container']} is set"
    for pair in _read(root / "proc/1/environ").split("\0"):
        if pair.startswith("container=") and pair != "container=":
            return f"PID 1 has {pair}"
    return None


def _container_reasons(env: Mapping[str, str], root: Path) -> tuple[list[str], list[str]]:
    """(evidence that this is a container, marker files that alone are none)."""
    reasons = _engine_mounts(_read(root / "proc/self/mountinfo"))
    variable = _container_variable(env, root)
    if variable:
        reasons.insert(0, variable)
    cgroup = _read(root / "proc/1/cgroup")
    mark = next((m for m in _CONTAINER_CGROUP_MARKS if m in cgroup), None)
    if mark:
        reasons.append(f"/proc/1/cgroup mentions {mark}")
    files = [f for f in _IMAGE_FILES if (root / f.lstrip("/")).exists()]
    return reasons, files


def cpu_quota(root: Path = Path("/")) -> float:
    """CPUs this process may use: the cgroup quota if set, else the affinity mask size."""
    try:
        avail = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        avail = float(os.cpu_count() or 1)
    quota: float | None = None
    v2 = _read(root / "sys/fs/cgroup/cpu.max").split()
    if len(v2) == 2 and v2[0] != "max":
        try:
            quota = int(v2[0]) / int(v2[1])
        except (ValueError, ZeroDivisionError):
            quota = None
    else:
        q = _read(root / "sys/fs/cgroup/cpu/cpu.cfs_quota_us").strip()
        p = _read(root / "sys/fs/cgroup/cpu/cpu.cfs_period_us").strip()
        try:
            if q and p and int(q) > 0:
                quota = int(q) / int(p)
        except (ValueError, ZeroDivisionError):
            quota = None
    if quota is not None and quota > 0:
        return min(avail, quota)
    return avail


def _defaults(kind: str, cpus: float) -> dict[str, Any]:
    workers = max(1, math.ceil(cpus))
    return {
        "log": {"format": "json" if kind in ("container", "kubernetes", "cloud") else "text"},
        "workers": min(workers, 2) if kind == "edge" else workers,
        "data_dir": "./.omnicore",
    }


def detect(
    environ: Mapping[str, str] | None = None,
    root: Path = Path("/"),
    configured: str | None = None,
) -> Environment:
    """Detect the environment; ``configured`` (from config ``environment``) wins if set."""
    env = os.environ if environ is None else environ
    cpus = cpu_quota(root)
    reasons: list[str] = []
    provider: str | None = None
    if configured:
        if configured not in KINDS:
            raise ValueError(f"unknown environment {configured!r}; one of {', '.join(KINDS)}")
        kind = configured
        reasons.append("set in config")
    elif env.get("KUBERNETES_SERVICE_HOST"):
        kind = "kubernetes"
        reasons.append("KUBERNETES_SERVICE_HOST is set")
    else:
        kind = "local"
        evidence, files = _container_reasons(env, root)
        if evidence:
            kind = "container"
            reasons.extend(evidence)
        else:
            for var, prov in _CLOUD_ENV:
                if env.get(var):
                    kind, provider = "cloud", prov
                    reasons.append(f"{var} is set")
                    break
            else:
                vendor = (_read(root / "sys/class/dmi/id/sys_vendor") + " "
                          + _read(root / "sys/class/dmi/id/product_name")).lower()
                for needle, prov in _DMI_VENDORS:
                    if needle in vendor:
                        kind, provider = "cloud", prov
                        reasons.append(f"DMI vendor mentions {needle}")
                        break
            if files:
                reasons.append(f"{' and '.join(files)} found, but no container engine's mounts, "
                               "cgroup or container=: a file system made from an image")
    return Environment(kind=kind, reasons=tuple(reasons), cpus=cpus, provider=provider,
                       defaults=_defaults(kind, cpus))
