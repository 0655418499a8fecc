"""The deployment files (Dockerfile, deploy/compose.yaml, deploy/kubernetes/) carry what they
must, read as files; and the image's entrypoint run directly with the image's own environment.
tests/deploy/test_image.py builds the image itself and runs its containers."""

from __future__ import annotations

import itertools
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dbservers import free_port
from tests.hosts import http_ok
from tests.waiting import Logged, eventually

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, argument) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stage(name: str) -> list[tuple[str, str]]:
    """The steps of the stage ``FROM ... AS name``, up to the next FROM."""
    steps = _dockerfile()
    starts = [i for i, (word, _) in enumerate(steps) if word == "FROM"] + [len(steps)]
    for begin, end in itertools.pairwise(starts):
        if steps[begin][1].split()[-1] == name:
            return steps[begin:end]
    raise AssertionError(f"no stage {name} in the Dockerfile")


def _runtime_stage() -> list[tuple[str, str]]:
    return _stage("runtime")


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, arg in stage:
        if word == "ENV":
            for pair in shlex.split(arg):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_the_image_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    steps = _dockerfile()
    froms = [arg for word, arg in steps if word == "FROM"]
    assert [f.split()[-1] for f in froms] == ["requirements", "build", "runtime", "demo"]
    assert all(f.startswith("${BASE}") for f in froms[:3])
    base = next(arg for word, arg in steps if word == "ARG" and arg.startswith("BASE="))
    assert "slim" in base  # the default base for users with a registry
    build_runs = " ".join(arg for word, arg in _stage("build") if word == "RUN")
    # No toolchains, browser or database server in an image build; the C call path is
    # required (OMNICORE_CALLPATH=native fails the build without it).
    assert "setup-toolchains" not in build_runs and "chromium" not in build_runs
    assert "OMNICORE_CALLPATH=native" in build_runs
    runtime = _runtime_stage()
    users = [arg for word, arg in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert int(users[-1].split(":")[0]) >= 1000
    health = " ".join(arg for word, arg in runtime if word == "HEALTHCHECK")
    assert "/readyz" in health
    assert [arg for word, arg in runtime if word == "EXPOSE"] == ["8470"]
    entry = next(arg for word, arg in runtime if word == "ENTRYPOINT")
    assert yaml.safe_load(entry)[:2] == ["omnicore", "run"]
    env = _env(runtime)
    assert env["OMNICORE_CONSOLE__HOST"] == "0.0.0.0"
    assert env["OMNICORE_ENVIRONMENT"] == "container"
    demo = _stage("demo")
    assert any("omnicore precompile /app" in arg for word, arg in demo if word == "RUN")
    assert _env(demo)["OMNICORE_SANDBOX__CACHE_DIR"].startswith("/app/")


def _image_requirements(*extras: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "deploy/image/requirements.py"),
                           str(ROOT / "pyproject.toml"), *extras],
                          capture_output=True, text=True, check=False)


def test_the_images_dependency_layer_holds_what_pip_reads_from_omnicores_metadata() -> None:
    """The build stage installs deploy/image/requirements.py's list before the host's code
    (a layer a code change does not rebuild), then omnicore with --no-deps: that list must be
    what pip itself would install for omnicore[postgres,connectors], read here from the
    installed package's metadata, the self-referencing extra followed."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    def key(req: Requirement) -> tuple[str, frozenset[str], str]:
        return req.name.lower().replace("_", "-"), frozenset(req.extras), str(req.specifier)

    done = _image_requirements("postgres", "connectors")
    assert done.returncode == 0, done.stderr
    listed = [Requirement(line) for line in done.stdout.splitlines()]
    assert len(listed) == len({key(r) for r in listed})  # each once
    wanted = set()
    for line in requires("omnicore") or []:
        req = Requirement(line)
        if req.name != "omnicore" and (req.marker is None or any(
                req.marker.evaluate({"extra": e}) for e in ("postgres", "connectors"))):
            wanted.add(key(Requirement(str(req).split(";")[0])))
    assert {key(r) for r in listed} == wanted
    # (No redis client: the host speaks RESP itself, egress/db/redis.py.)
    assert {"wasmtime", "psycopg", "pymysql", "hnswlib"} <= {k[0] for k in wanted}
    # The Dockerfile installs that list before it copies the code, and checks it after.
    build = _stage("build")
    runs = [i for i, (word, arg) in enumerate(build) if word == "RUN" and "pip install" in arg]
    code = next(i for i, (word, arg) in enumerate(build) if word == "COPY" and "host/" in arg)
    assert "-r /tmp/requirements.txt" in build[runs[0]][1] and runs[0] < code < runs[1]
    assert "--no-deps" in build[runs[1]][1] and "pip check" in build[runs[1]][1]
    # `scripts/image --refresh` makes that layer anew: the build argument it sets (and keeps
    # setting, so later builds take the refreshed layer) is declared just before the step and
    # read by it, so its value is part of the step's cache key (buildah's, as Docker's).
    assert build[runs[0] - 1] == ("ARG", "REFRESHED=") and "${REFRESHED" in build[runs[0]][1]
    script = (ROOT / "scripts/image").read_text()
    assert 'deps_args=(--build-arg "REFRESHED=$(cat "$refreshed")")' in script
    assert '"${deps_args[@]}"' in script.split("buildah bud", 1)[1].split("\n", 2)[1]


def test_the_images_requirements_refuse_an_unknown_extra() -> None:
    done = _image_requirements("postgres", "mongo")
    assert done.returncode != 0 and done.stdout == ""
    assert "has no extra 'mongo'" in done.stderr and "connectors" in done.stderr


def test_the_image_entrypoint_serves_healthz_with_the_images_environment(
        tmp_path: Path) -> None:
    """``omnicore run /app`` with the runtime stage's ENV (data dir and port moved into the
    test's own room), then the image's HEALTHCHECK command against it."""
    runtime = _runtime_stage()
    env = {**os.environ, **_env(runtime)}
    port = free_port()
    app = tmp_path / "app"
    (app / "plugins").mkdir(parents=True)
    for word, arg in runtime:  # what the image copies from the checkout into /app
        parts = [p for p in arg.split() if not p.startswith("--")]
        if word == "COPY" and "--from" not in arg and parts[-1].startswith("/app/"):
            (app / parts[-1].removeprefix("/app/")).write_bytes((ROOT / parts[0]).read_bytes())
    assert (app / "omnicore.yaml").is_file()
    env.update(OMNICORE_DATA_DIR=str(tmp_path / "data"), OMNICORE_CONSOLE__PORT=str(port),
               OMNICORE_CONSOLE__HOST="127.0.0.1")
    entry = yaml.safe_load(next(arg for word, arg in runtime if word == "ENTRYPOINT"))
    argv = [str(Path(os.sys.executable).parent / entry[0]), *entry[1:-1], str(app)]
    log = tmp_path / "stderr.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=sink)
    try:
        eventually(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
                   "the entrypoint answering /healthz", watch=[Logged(proc, log)])
        check = yaml.safe_load(next(arg for word, arg in runtime if word == "HEALTHCHECK")
                               .split(" CMD ", 1)[1])
        check = [c.replace("8470", str(port)) for c in check]
        check[0] = os.sys.executable
        assert subprocess.run(check, timeout=30).returncode == 0
    finally:
        proc.terminate()
        proc.wait(30)
    # JSON logs in the image: one object per line.
    err = log.read_text()
    first = next(line for line in err.splitlines() if line.strip())
    assert first.lstrip().startswith("{"), err[:500]


def test_compose_runs_postgres_and_two_instances_sharing_it() -> None:
    doc = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = doc["services"]
    assert "db" in services and services["db"]["image"].startswith("postgres:15")
    hosts = {n: s for n, s in services.items() if n.startswith("omnicore-")}
    assert len(hosts) == 2
    urls = {s["environment"]["OMNICORE_STORAGE__URL"] for s in hosts.values()}
    keys = {s["environment"]["OMNICORE_SECRET_KEY"] for s in hosts.values()}
    assert len(urls) == 1 and next(iter(urls)).startswith("postgresql://")
    assert "@db:5432/" in next(iter(urls))
    assert len(keys) == 1  # the sealing key is the same on every instance
    for s in hosts.values():
        assert s["depends_on"]["db"]["condition"] == "service_healthy"
        assert s["build"]["dockerfile"] == "Dockerfile"
        assert s["build"]["target"] == "demo" and s["image"] == "omnicore:demo"
    init = (ROOT / "deploy" / "postgres-init.sql").read_text()
    assert "NOSUPERUSER" in init and "OWNER omnicore" in init
    mounts = " ".join(services["db"]["volumes"])
    assert "postgres-init.sql:/docker-entrypoint-initdb.d/" in mounts


def _k8s(name: str) -> Any:
    return yaml.safe_load((K8S / name).read_text())


def test_kubernetes_manifests_carry_probes_ports_env_and_a_non_root_user() -> None:
    kustom = _k8s("kustomization.yaml")
    assert sorted(kustom["resources"]) == sorted(p.name for p in K8S.glob("*.yaml")
                                                 if p.name != "kustomization.yaml")
    deploy = _k8s("deployment.yaml")
    assert deploy["kind"] == "Deployment"
    spec = deploy["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    (container,) = spec["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"console": 8470}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    secret = _k8s("secret.yaml")
    for var in ("OMNICORE_STORAGE__URL", "OMNICORE_SECRET_KEY"):
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    assert secret["stringData"]["storage-url"].startswith("postgresql://")
    assert env["OMNICORE_CONSOLE__HOST"]["value"] == "0.0.0.0"
    service = _k8s("service.yaml")
    assert service["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] in ("console", 8470)
    pdb = _k8s("pdb.yaml")
    assert pdb["kind"] == "PodDisruptionBudget"
    assert pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]
    assert 0 < pdb["spec"]["minAvailable"] < deploy["spec"]["replicas"]


def test_kubernetes_migrates_in_an_init_container_and_its_hosts_never_do() -> None:
    spec = _k8s("deployment.yaml")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (init,) = spec["initContainers"]
    assert init["image"] == container["image"]  # the new image's steps, before its host
    assert init["command"] == ["omnicore", "migrate", "--app", "/app"]
    assert {e["name"]: e for e in init["env"]}["OMNICORE_STORAGE__URL"] == \
        {e["name"]: e for e in container["env"]}["OMNICORE_STORAGE__URL"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OMNICORE_STORAGE__MIGRATE"] == "false"


@pytest.mark.parametrize("path", [*sorted(K8S.glob("*.yaml")), ROOT / "deploy/compose.yaml"],
                         ids=lambda p: p.name)
def test_every_manifest_is_one_valid_yaml_document(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    assert len(docs) == 1 and isinstance(docs[0], dict)


def test_compose_runs_the_example_databases_with_the_demo_connectors_wired() -> None:
    doc = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = doc["services"]
    assert services["mariadb"]["image"].startswith("mariadb:")
    assert services["redis"]["image"].startswith("redis:")
    for name in ("db", "mariadb", "redis"):
        assert services[name]["healthcheck"]["test"]
    # The stock example's table in both SQL servers, from the one schema file.
    assert any("plugins/stock/schema.sql" in m for m in services["db"]["volumes"])
    assert any("plugins/stock/schema.sql" in m for m in services["mariadb"]["volumes"])
    init = (ROOT / "deploy" / "shop-init.sql").read_text()
    assert "NOSUPERUSER" in init and "OWNER shop" in init
    # The demo's connectors (plugins/demo.yaml) point at the services; no password in a URL.
    demo = yaml.safe_load((ROOT / "plugins" / "demo.yaml").read_text())
    for host in (s for n, s in services.items() if n.startswith("omnicore-")):
        env = host["environment"]
        assert env["OMNICORE_CONNECTORS__ORDERS__URL"] == "postgresql://shop@db:5432/shop"
        assert env["OMNICORE_CONNECTORS__CACHE__URL"].startswith("redis://redis:6379/")
        assert {"mariadb", "redis"} <= set(host["depends_on"])
        for key, url in env.items():
            if key.startswith("OMNICORE_CONNECTORS__") and key.endswith("__URL"):
                userinfo, _, _ = url.split("://", 1)[1].rpartition("@")
                assert ":" not in userinfo, url
    assert demo["connectors"]["orders"]["kind"] == "postgres"
    assert demo["connectors"]["cache"]["kind"] == "redis"


def test_kubernetes_keeps_the_compiled_cache_on_a_volume_that_outlives_pods() -> None:
    """Plugins come from the catalog (none baked into the runtime image), compiled once into
    a cache on a claim every pod mounts: a restarted or new pod loads them warm."""
    spec = _k8s("deployment.yaml")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    cache_dir = Path(env["OMNICORE_SANDBOX__CACHE_DIR"])
    mounts = {m["name"]: Path(m["mountPath"]) for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    (name,) = [n for n, path in mounts.items() if path in cache_dir.parents]
    claim = volumes[name]["persistentVolumeClaim"]["claimName"]
    # A folder of its own under the mount: the host makes it 0700 (the mount's root is the
    # volume's, group-writable with fsGroup, which the cache check refuses).
    assert cache_dir != mounts[name]
    pvc = _k8s("cache-pvc.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim" and pvc["metadata"]["name"] == claim
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]  # pods on several nodes share it
    assert "cache-pvc.yaml" in _k8s("kustomization.yaml")["resources"]
    # The data dir stays per pod (the catalog's fetched modules are checked by digest there).
    assert "emptyDir" in volumes[next(n for n, p in mounts.items()
                                      if p == Path("/var/lib/omnicore"))]
    # The variable is the config key it means.
    from omnicore.config import load_config

    cfg = load_config(None, environ={"OMNICORE_SANDBOX__CACHE_DIR": str(cache_dir)})
    assert cfg.sandbox.cache_dir == cache_dir
    # The runtime image bakes in no plugin; its Deployment follows the catalog (the default).
    runtime = _runtime_stage()
    assert not any(word == "COPY" and "plugins" in arg.split()[0]
                   for word, arg in runtime if "--from" not in arg)
    assert "OMNICORE_CATALOG__FOLLOW" not in env


def test_compose_hosts_share_a_compiled_cache_volume_at_the_images_cache_dir() -> None:
    doc = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    cache_dir = _env(_stage("demo"))["OMNICORE_SANDBOX__CACHE_DIR"]
    hosts = [s for n, s in doc["services"].items() if n.startswith("omnicore-")]
    named = set()
    for host in hosts:
        # "volume:/path" -> {"/path": "volume"}
        mounts = {path: source for source, path in (v.split(":")[:2] for v in host["volumes"])}
        assert cache_dir in mounts, host["volumes"]
        named.add(mounts[cache_dir])
        assert mounts["/var/lib/omnicore"] != mounts[cache_dir]
    (volume,) = named  # one volume, shared: compiled once for both hosts
    assert volume in doc["volumes"]
