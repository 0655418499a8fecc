"""Push and pull against a real registry (Debian's docker-registry, started here): the Wasm
artifact layout other tools read, every byte checked, auth, a private CA, and registries
that lie, stall, drip or loop."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore import oci
from omnicore.oci import artifact
from omnicore.oci.client import Options, RegistryClient
from tests.oci.conftest import make_module
from tests.oci.faults import CorruptingProxy, Scripted, Silent
from tests.registryserver import PASSWORD, USER, Registry


def _get_json(url: str, accept: str = artifact.MANIFEST_MEDIA_TYPE) -> tuple[bytes, str]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read(), resp.headers.get("Content-Type", "")


# ---- the round trip ----------------------------------------------------------------------

def test_push_then_pull_by_tag_and_by_digest_gives_the_same_bytes(registry: Registry,
                                                                  module: bytes) -> None:
    sidecar = {"grants": ["kv"], "config": {"greeting": "hi"}}
    pushed = oci.push(module, registry.ref("plugins/greeter:1.2.0"), name="greeter",
                      sidecar=sidecar)
    assert pushed.module_digest == "sha256:" + __import__("hashlib").sha256(module).hexdigest()

    by_tag = oci.pull(registry.ref("plugins/greeter:1.2.0"))
    by_digest = oci.pull(registry.ref(f"plugins/greeter@{pushed.digest}"))
    for pulled in (by_tag, by_digest):
        assert pulled.module == module
        assert pulled.digest == pushed.digest
        assert pulled.module_digest == pushed.module_digest
        assert pulled.name == "greeter"
        assert pulled.sidecar == sidecar


def test_the_same_module_pushes_to_the_same_digest(registry: Registry, module: bytes) -> None:
    # created comes from SOURCE_DATE_EPOCH or the epoch, never the clock: a re-push keeps
    # the manifest digest, so its signatures stay valid.
    first = oci.push(module, registry.ref("plugins/again:a"), name="again")
    time.sleep(1.1)
    second = oci.push(module, registry.ref("plugins/again:b"), name="again")
    assert first.digest == second.digest


def test_the_manifest_is_the_wasm_layout_wkg_and_spin_read(registry: Registry,
                                                           module: bytes) -> None:
    pushed = oci.push(module, registry.ref("plugins/layout:1"), name="layout",
                      version="1.2.0", sidecar={"grants": ["kv"]})
    raw, media = _get_json(f"{registry.base}/v2/plugins/layout/manifests/1")
    assert media == "application/vnd.oci.image.manifest.v1+json"
    doc = json.loads(raw)
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert doc["config"]["mediaType"] == "application/vnd.wasm.config.v0+json"
    assert len(doc["layers"]) == 1  # wkg and oci-wasm refuse more than one layer
    layer = doc["layers"][0]
    assert layer["mediaType"] == "application/wasm"
    assert layer["digest"] == pushed.module_digest and layer["size"] == len(module)
    assert layer["annotations"]["org.opencontainers.image.title"] == "layout.wasm"
    assert json.loads(doc["annotations"]["dev.omnicore.plugin.sidecar"]) == {"grants": ["kv"]}
    assert doc["annotations"]["org.opencontainers.image.version"] == "1.2.0"

    config, _ = _get_json(f"{registry.base}/v2/plugins/layout/blobs/{doc['config']['digest']}",
                          "*/*")
    fields = json.loads(config)
    assert fields["architecture"] == "wasm" and fields["os"] == "wasip1"
    assert fields["layerDigests"] == [pushed.module_digest]
    assert fields["created"] == "1970-01-01T00:00:00Z"


def test_a_component_is_wasip2_with_its_imports_and_exports() -> None:
    component = Path(__file__).parents[2] / "build" / "plugins" / "counter-python.wasm"
    if not component.is_file():
        wasm = b"\0asm\r\0\1\0"
        art = artifact.build(wasm, name="c")
        assert json.loads(art.config)["os"] == "wasip2"
        assert json.loads(art.config)["component"] == {"exports": [], "imports": []}
        return
    art = artifact.build(component.read_bytes(), name="counter-python")
    config = json.loads(art.config)
    assert config["os"] == "wasip2"
    assert any(name.startswith("omnicore:plugin/kv") for name in config["component"]["imports"])
    assert any(name.startswith("omnicore:plugin/handler")
               for name in config["component"]["exports"])


def test_a_ten_mib_module_round_trips(registry: Registry) -> None:
    big = make_module("big", pad=10 * 1024 * 1024)
    oci.push(big, registry.ref("plugins/big:1"))
    assert oci.pull(registry.ref("plugins/big:1")).module == big


def test_oras_reads_what_omnicore_pushes_and_the_reverse(registry: Registry, module: bytes,
                                                         tmp_path: Path) -> None:
    import oras.client as oras_client  # a dev dependency
    oci.push(module, registry.ref("plugins/interop:1"), name="interop")
    client = oras_client.OrasClient(hostname=registry.host, insecure=True)
    files = client.pull(target=f"{registry.host}/plugins/interop:1", outdir=str(tmp_path / "o"))
    assert [Path(f).name for f in files] == ["interop.wasm"]
    assert Path(files[0]).read_bytes() == module

    # A Wasm artifact oras writes (config and layer media types as the guidance says).
    src = tmp_path / "other.wasm"
    src.write_bytes(make_module("other"))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"architecture": "wasm", "os": "wasip1",
                                  "layerDigests": []}))
    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        client.push(target=f"{registry.host}/plugins/from-oras:1",
                    files=["other.wasm:application/wasm"],
                    manifest_config=f"{config}:application/vnd.wasm.config.v0+json",
                    disable_path_validation=True)
    finally:
        os.chdir(here)
    pulled = oci.pull(registry.ref("plugins/from-oras:1"))
    assert pulled.module == src.read_bytes()
    assert pulled.name == "other"


# ---- refusals ----------------------------------------------------------------------------

def test_a_registry_that_answers_a_wrong_blob_is_refused(registry: Registry,
                                                         module: bytes) -> None:
    oci.push(module, registry.ref("plugins/corrupt:1"))
    proxy = CorruptingProxy(registry.host)
    try:
        with pytest.raises(oci.ArtifactRefused, match=r"sent the config with digest sha256:"
                           r"[0-9a-f]{64}, not sha256:[0-9a-f]{64}; refused"):
            oci.pull(proxy.ref("plugins/corrupt:1"))
        assert proxy.altered >= 1
    finally:
        proxy.stop()


def test_a_manifest_that_is_not_its_digest_is_refused(registry: Registry,
                                                      module: bytes) -> None:
    pushed = oci.push(module, registry.ref("plugins/corrupt-manifest:1"))
    proxy = CorruptingProxy(registry.host, manifests=True)
    try:
        with pytest.raises(oci.ArtifactRefused, match=r"not the sha256:.* asked for"):
            oci.pull(proxy.ref(f"plugins/corrupt-manifest@{pushed.digest}"))
        with pytest.raises(oci.ArtifactRefused, match="the registry says the manifest's digest"):
            oci.pull(proxy.ref("plugins/corrupt-manifest:1"))
    finally:
        proxy.stop()


def test_an_oversized_manifest_is_refused_before_it_is_read(registry: Registry,
                                                            module: bytes) -> None:
    oci.push(module, registry.ref("plugins/huge-manifest:1"),
             sidecar={"config": {"blob": "x" * 60_000}})
    with pytest.raises(oci.ArtifactRefused, match=r"the manifest 1 is \d+ bytes, over the 8192 "
                                                  "registry.max_manifest_bytes allows"):
        oci.pull(registry.ref("plugins/huge-manifest:1"),
                 options=Options(max_manifest_bytes=8192))


def test_a_manifest_that_never_ends_is_cut_at_the_cap() -> None:
    def endless(method: str, path: str) -> tuple[int, dict[str, str], Iterator[bytes], float]:
        def chunks() -> Iterator[bytes]:
            while True:
                yield b"%x\r\n%s\r\n" % (65536, b"{" * 65536)
        return 200, {"Transfer-Encoding": "chunked",
                     "Content-Type": artifact.MANIFEST_MEDIA_TYPE}, chunks(), 0.0
    server = Scripted(endless)
    try:
        with pytest.raises(oci.ArtifactRefused, match=r"runs past 1048576 bytes"):
            oci.pull(server.ref("plugins/x:1"), options=Options(max_manifest_bytes=1 << 20))
    finally:
        server.stop()


def test_a_module_over_the_blob_cap_is_refused_from_its_descriptor(registry: Registry) -> None:
    big = make_module("big", pad=200_000)
    oci.push(big, registry.ref("plugins/over-cap:1"))
    with pytest.raises(oci.ArtifactRefused,
                       match=r"the module is \d+ bytes, over the 100000 registry.max_blob_bytes"):
        oci.pull(registry.ref("plugins/over-cap:1"), options=Options(max_blob_bytes=100_000))


def test_a_container_image_or_other_artifact_is_not_taken_for_a_plugin(
        registry: Registry, module: bytes) -> None:
    with RegistryClient(oci.Reference.parse(registry.ref("images/app:1"))) as client:
        config = client.put_blob(b"{}")
        layer = client.put_blob(module)
        manifest = {"schemaVersion": 2, "mediaType": artifact.MANIFEST_MEDIA_TYPE,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": config, "size": 2},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": layer, "size": len(module)}]}
        client.put_manifest("1", json.dumps(manifest).encode(), artifact.MANIFEST_MEDIA_TYPE)
    with pytest.raises(oci.ArtifactRefused, match=r"its config is 'application/vnd.oci.image."
                                                  r"config.v1\+json', not a Wasm artifact's"):
        oci.pull(registry.ref("images/app:1"))


def test_an_unknown_tag_says_so(registry: Registry) -> None:
    with pytest.raises(oci.RegistryNotFound, match=r"the manifest nope is not in .*MANIFEST_"
                                                   r"UNKNOWN"):
        oci.pull(registry.ref("plugins/greeter:nope"))


def test_a_silent_registry_ends_by_the_timeout() -> None:
    silent = Silent()
    try:
        start = time.monotonic()
        with pytest.raises(oci.RegistryError, match=r"did not answer within 1 s "
                                                    r"\(registry.timeout_s\)"):
            oci.pull(silent.ref("plugins/x:1"), options=Options(timeout_s=1))
        assert time.monotonic() - start < 5
    finally:
        silent.stop()


def test_a_registry_that_drips_ends_by_the_deadline() -> None:
    def drip(method: str, path: str) -> tuple[int, dict[str, str], Iterator[bytes], float]:
        return 200, {"Content-Length": "100000",
                     "Content-Type": artifact.MANIFEST_MEDIA_TYPE}, iter([b"{"] * 100000), 0.1
    server = Scripted(drip)
    try:
        start = time.monotonic()
        with pytest.raises(oci.RegistryError, match=r"too slow: not done within 2 s "
                                                    r"\(registry.deadline_s\)"):
            oci.pull(server.ref("plugins/x:1"), options=Options(timeout_s=1, deadline_s=2))
        assert time.monotonic() - start < 4
    finally:
        server.stop()


def test_a_redirect_loop_is_refused() -> None:
    def loop(method: str, path: str) -> tuple[int, dict[str, str], Iterator[bytes], float]:
        nxt = "/b" if path != "/b" else "/a"
        return 307, {"Location": nxt, "Content-Length": "0"}, iter(()), 0.0
    server = Scripted(loop)
    try:
        with pytest.raises(oci.RegistryError,
                           match=r"redirects in a loop \(.*/a -> .*/b\); refused"):
            oci.pull(server.ref("plugins/x:1"))
    finally:
        server.stop()


# ---- auth and TLS ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def basic_registry() -> Iterator[Registry]:
    server = Registry.start(basic=True)
    try:
        yield server
    finally:
        server.stop()


def _docker_config(folder: Path, host: str, user: str, password: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return folder


def test_basic_auth_from_the_docker_config_file(basic_registry: Registry, module: bytes,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ref = basic_registry.ref("private/greeter:1")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    with pytest.raises(oci.RegistryAuthError, match=f"the registry {basic_registry.host} asks "
                                                    "for credentials and none were found"):
        oci.push(module, ref)

    monkeypatch.setenv("DOCKER_CONFIG", str(_docker_config(tmp_path / "good",
                                                           basic_registry.host, USER, PASSWORD)))
    oci.push(module, ref)
    assert oci.pull(ref).module == module

    monkeypatch.setenv("DOCKER_CONFIG", str(_docker_config(tmp_path / "bad",
                                                           basic_registry.host, USER, "wrong")))
    with pytest.raises(oci.RegistryAuthError, match=r"refused the credentials from .*bad/config"
                                                    r"\.json auths"):
        oci.pull(ref)


def test_basic_auth_given_outright(basic_registry: Registry, module: bytes) -> None:
    creds = oci.Credentials(USER, PASSWORD)
    ref = basic_registry.ref("private/given:1")
    oci.push(module, ref, options=Options(credentials=creds))
    assert oci.pull(ref, options=Options(credentials=creds)).module == module


def test_bearer_tokens_from_the_registry_token_service(module: bytes, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    server = Registry.start(bearer=True)
    try:
        ref = server.ref("team/greeter:1")
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
        # Anonymous: the token service grants pull only, so the push is denied.
        with pytest.raises(oci.RegistryAuthError):
            oci.push(module, ref)
        monkeypatch.setenv("DOCKER_CONFIG", str(_docker_config(tmp_path / "c", server.host,
                                                               USER, PASSWORD)))
        oci.push(module, ref)
        assert oci.pull(ref).module == module
        assert server.token is not None and server.token.requests >= 2
    finally:
        server.stop()


def test_tls_with_a_private_ca(module: bytes) -> None:
    server = Registry.start(tls=True)
    try:
        ref = server.ref("secure/greeter:1")
        # A CA file that is not the registry's: TLS is asked for and the certificate refused.
        with pytest.raises(oci.RegistryError, match=r"TLS with 127.0.0.1:\d+ failed .*"
                                                    r"--ca-file or registry.ca_file"):
            oci.push(module, ref, options=Options(ca_file=_system_ca()))
        assert server.ca is not None
        options = Options(ca_file=server.ca)
        pushed = oci.push(module, ref, options=options)
        assert oci.pull(ref, options=options).digest == pushed.digest
    finally:
        server.stop()


def _system_ca() -> Path:
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if Path(path).is_file():
            return Path(path)
    raise AssertionError("no system CA bundle (Debian's ca-certificates) to stand for "
                         "'not the private CA'")
