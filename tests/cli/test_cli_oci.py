"""``omnicore plugins push|pull|sign|verify|keygen`` end to end against a real registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from omnicore.cli import main
from tests.oci.conftest import make_module
from tests.registryserver import Registry


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    server = Registry.start()
    try:
        yield server
    finally:
        server.stop()


def _run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_push_sign_pull_verify_with_the_app_trust_policy(
        registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("greeter.wasm").write_bytes(make_module())
    Path("greeter.yaml").write_text("grants: [kv]\n")
    ref = registry.ref("cli/greeter:1")
    out = _run("plugins", "push", "greeter.wasm", ref)
    assert f"{ref}@sha256:" in out
    _run("plugins", "keygen", "--out", "ops")
    _run("plugins", "keygen", "--out", "stranger")
    assert oct(Path("ops.key").stat().st_mode & 0o777) == "0o600"

    app = tmp_path / "app"
    app.mkdir()
    (app / "omnicore.yaml").write_text("plugins:\n  trust:\n    keys: [../ops.pub]\n"
                                       "    require: true\n")
    refused = _run("plugins", "pull", ref, "--into", "app/plugins", "--app", "app", ok=False)
    assert "it is not signed" in refused and "\n" not in refused.strip().split("Error: ")[-1]
    assert not (app / "plugins" / "greeter.wasm").exists()

    _run("plugins", "sign", ref, "--key", "ops.key")
    out = _run("plugins", "pull", ref, "--into", "app/plugins", "--app", "app")
    assert "signed by ops.pub" in out and "it asks for: kv" in out
    assert (app / "plugins" / "greeter.wasm").read_bytes() == Path("greeter.wasm").read_bytes()
    assert not (app / "plugins" / "greeter.yaml").exists()  # requests are not grants
    _run("plugins", "pull", ref, "-o", "copy.wasm", "--with-sidecar")
    assert Path("copy.yaml").is_file()

    assert "signed by ops.pub" in _run("plugins", "verify", ref, "--app", "app")
    refused = _run("plugins", "verify", ref, "--key", "stranger.pub", ok=False)
    assert "which is not trusted (trusted: stranger.pub" in refused


def test_sign_and_verify_a_file_as_cosign_sign_blob(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("p.wasm").write_bytes(make_module("p"))
    _run("plugins", "keygen", "--out", "k")
    _run("plugins", "sign", "p.wasm", "--key", "k.key")
    assert Path("p.wasm.sig").is_file()
    assert "signed by k.pub" in _run("plugins", "verify", "p.wasm", "--key", "k.pub")
    Path("p.wasm").write_bytes(make_module("p") + b"\0")
    assert "does not verify" in _run("plugins", "verify", "p.wasm", "--key", "k.pub", ok=False)
    assert "exists" in _run("plugins", "keygen", "--out", "k", ok=False)


def test_a_bad_reference_is_a_usage_error() -> None:
    out = _run("plugins", "pull", "oci://registry.example/Upper:1", ok=False)
    assert "must be lowercase" in out
