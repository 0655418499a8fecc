"""``omnicore plugins push|pull|sign|verify|keygen``: plugins in OCI registries, and signatures.

These work without a running host. The app folder's ``omnicore.yaml`` (``--app``, default
here; none is fine) gives ``registry.*`` (CA file, plain-HTTP registries, timeouts, caps)
and ``plugins.trust`` (the keys a pulled module must be signed by); the flags win over it.
Credentials come from the Docker config file (``docker login``), or ``--username`` with
``--password-stdin``. The layout and the checks are specs/registry.md; what a signature
proves is specs/security.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from omnicore.cli.appdata import app_option
from omnicore.cli.main import CONFIG_FILE
from omnicore.cli.plugin_group import plugins_group

if TYPE_CHECKING:
    from omnicore.config import OmniConfig
    from omnicore.oci import Options, TrustPolicy

__all__ = ["keygen", "pull", "push", "sign", "verify"]

_PASSWORD_ENV = "OMNICORE_SIGNING_PASSWORD"
_APP = app_option("The app folder whose omnicore.yaml gives registry.* and plugins.trust "
                  "(none there is fine).")


def _registry_options(f: Any) -> Any:
    for option in reversed([
        click.option("--ca-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     help="PEM CA certificates to trust for the registry (beside the "
                          "system's; overrides registry.ca_file)."),
        click.option("--plain-http", is_flag=True,
                     help="Reach the registry over plain HTTP (loopback registries are, "
                          "unless a CA file is given)."),
        click.option("--username", "-u", help="Registry user name (with --password-stdin); "
                                              "default: the Docker config file's."),
        click.option("--password-stdin", is_flag=True,
                     help="Read the registry password (or token) from stdin."),
        click.option("--timeout", type=click.FloatRange(min=0.1),
                     help="Seconds one wait on the registry may take (registry.timeout_s)."),
    ]):
        f = option(f)
    return f


def _config(appdir: Path) -> OmniConfig | None:
    path = appdir / CONFIG_FILE
    if not path.is_file():
        return None
    from omnicore.config import load_config

    return load_config(path)


def _options(cfg: OmniConfig | None, ref: str, ca_file: Path | None, plain_http: bool,
             username: str | None, password_stdin: bool, timeout: float | None) -> Options:
    from omnicore.oci import Credentials, Options, Reference

    credentials = None
    if password_stdin:
        if not username:
            raise click.UsageError("--password-stdin needs --username")
        password = sys.stdin.readline().rstrip("\r\n")
        credentials = Credentials(username, password, source="--username/--password-stdin")
    elif username:
        raise click.UsageError("--username needs --password-stdin (the password never goes "
                               "on the command line)")
    plain: set[str] = set()
    if plain_http:
        plain.add(Reference.parse(ref).registry)
    options = Options.from_config(cfg.registry if cfg else None, ca_file=ca_file,
                                  timeout_s=timeout, credentials=credentials)
    if plain:
        from dataclasses import replace

        options = replace(options, plain_http=options.plain_http | plain)
    return options


def _parse_ref(text: str) -> Any:
    from omnicore.oci import Reference

    try:
        return Reference.parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="REFERENCE") from None


def _policy(cfg: OmniConfig | None, keys: tuple[Path, ...], *, always: bool) -> TrustPolicy:
    """``--key`` files (trusted, and a signature required), else plugins.trust; ``always``:
    a signature is required either way (``verify``)."""
    from omnicore.oci import TrustPolicy

    if keys:
        return TrustPolicy.from_keys(keys, require=True, origin="--key")
    policy = TrustPolicy.from_config(cfg.trust if cfg else None)
    if always and not policy.keys:
        raise click.UsageError(f"no key to verify with: give --key KEY.pub, or list keys in "
                               f"plugins.trust.keys of {CONFIG_FILE}")
    return TrustPolicy(policy.keys, True, "verify") if always else policy


def _password() -> bytes | None:
    value = os.environ.get(_PASSWORD_ENV)
    return value.encode() if value else None


def _private_key(path: Path) -> Any:
    from omnicore.oci import load_private_key

    try:
        return load_private_key(path.read_bytes(), _password())
    except ValueError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--key") from None


@plugins_group.command("push")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("reference")
@click.option("--name", help="The plugin's name in the artifact (default: the file's name).")
@click.option("--sidecar", "sidecar_file", type=click.Path(dir_okay=False, exists=True,
                                                           path_type=Path),
              help="The sidecar to carry (default: the one beside FILE, if any); its grants "
                   "travel as requests, never as grants.")
@click.option("--no-sidecar", is_flag=True, help="Carry no sidecar, even if FILE has one.")
@_registry_options
@_APP
def push(file: Path, reference: str, name: str | None, sidecar_file: Path | None,
         no_sidecar: bool, appdir: Path, **registry: Any) -> None:
    """Push the plugin FILE to REFERENCE (oci://REGISTRY/REPO:TAG) as a Wasm artifact."""
    from omnicore.oci import push as push_artifact
    from omnicore.plugins.sidecar import read_sidecar_data
    from omnicore.sandbox.manifest import parse_manifest

    ref = _parse_ref(reference)
    module = file.read_bytes()
    sidecar: dict[str, Any] | None = None
    if sidecar_file is not None and not no_sidecar:
        sidecar = _read_sidecar_file(sidecar_file)
    elif not no_sidecar:
        sidecar = read_sidecar_data(file) or None
    try:
        manifest = parse_manifest(module, None)
    except Exception:
        manifest = {}
    version = manifest.get("version") if isinstance(manifest.get("version"), str) else None
    options = _options(_config(appdir), reference, **registry)
    pushed = push_artifact(module, ref, name=name or file.stem, version=version,
                           sidecar=sidecar, options=options)
    click.echo(str(pushed.reference))
    click.echo(f"pushed {file.name} ({pushed.size} bytes, module {pushed.module_digest[:19]}"
               f"{', with its sidecar' if sidecar else ''}) to {ref}", err=True)


def _read_sidecar_file(path: Path) -> dict[str, Any]:
    import tomllib

    import yaml

    from omnicore import yamlfile
    from omnicore.errors import ConfigError

    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yamlfile.load(text, str(path))
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot parse sidecar: {exc}".replace("\n", " "),
                          source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a sidecar is a mapping of keys", source=str(path))
    return data


@plugins_group.command("pull")
@click.argument("reference")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the module to this file.")
@click.option("--into", type=click.Path(file_okay=False, path_type=Path),
              help="Write the module into this plugins folder as NAME.wasm.")
@click.option("--name", help="NAME.wasm for --into (default: the artifact's file name, else "
                             "the repository's last part).")
@click.option("--with-sidecar", is_flag=True,
              help="Also write the artifact's sidecar beside the module (NAME.yaml): its "
                   "grants then become the folder's; without it they are only shown.")
@click.option("--key", "keys", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Require a signature by this public key (repeatable; instead of "
                   "plugins.trust).")
@_registry_options
@_APP
def pull(reference: str, output: Path | None, into: Path | None, name: str | None,
         with_sidecar: bool, keys: tuple[Path, ...], appdir: Path, **registry: Any) -> None:
    """Pull the plugin REFERENCE (oci://REGISTRY/REPO:TAG or ...@sha256:DIGEST).

    Every byte is checked against its digest; under plugins.trust (or --key) its signatures
    are checked before the module is downloaded.
    """
    from omnicore.oci import pull as pull_artifact

    if output is not None and into is not None:
        raise click.UsageError("give -o FILE or --into DIR, not both")
    ref = _parse_ref(reference)
    cfg = _config(appdir)
    policy = _policy(cfg, keys, always=False)
    pulled = pull_artifact(ref, options=_options(cfg, reference, **registry), policy=policy)
    target = output
    if target is None:
        folder = into if into is not None else Path(".")
        stem = name or pulled.name or ref.repository.rsplit("/", 1)[-1]
        if "/" in stem or "\\" in stem or stem in ("", ".", ".."):
            raise click.BadParameter(f"{stem!r} is not a file name", param_hint="--name")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{stem}.wasm"
    _write_atomically(target, pulled.module)
    if pulled.sidecar and with_sidecar:
        from omnicore.plugins.sidecar import write_sidecar_data

        write_sidecar_data(target, pulled.sidecar)
    click.echo(str(target))
    signed = f"; {pulled.verdict.reason}" if pulled.verdict else ""
    click.echo(f"pulled {pulled.reference} ({len(pulled.module)} bytes, module "
               f"{pulled.module_digest[:19]}){signed}", err=True)
    if pulled.sidecar and not with_sidecar:
        asked = pulled.sidecar.get("grants")
        names = ", ".join(asked) if isinstance(asked, list | dict) else ""
        click.echo(f"its sidecar was not written{f' (it asks for: {names})' if names else ''};"
                   " grant what you choose, or pull again with --with-sidecar", err=True)


def _write_atomically(path: Path, data: bytes) -> None:
    # A plugins folder is watched: the module appears whole or not at all.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@plugins_group.command("sign")
@click.argument("target")
@click.option("--key", "key_file", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help=f"The private key (PEM; its password from ${_PASSWORD_ENV}).")
@click.option("--module", "module",
              help="TARGET is a sidecar: the module it goes with (its .wasm FILE, or "
                   "sha256:<hex>); the signature binds the sidecar to it and to --name.")
@click.option("--name", "name",
              help="With --module: the plugin name the sidecar is published under "
                   "(default: the module file's name without .wasm).")
@_registry_options
@_APP
def sign(target: str, key_file: Path, module: str | None, name: str | None, appdir: Path,
         **registry: Any) -> None:
    """Sign TARGET: an artifact (oci://...: a cosign signature at its .sig tag), a FILE
    (FILE.sig beside it, as cosign sign-blob writes), or a sidecar file for one module and
    plugin name (--module, --name: SIDECAR.sig signs SIDECAR.statement.json, which binds the
    three; cosign sign-blob of that file writes the same)."""
    from omnicore.oci import is_reference
    from omnicore.oci import sign as sign_artifact
    from omnicore.oci.signing import fingerprint, sign_blob

    key = _private_key(key_file)
    if not is_reference(target):
        path = Path(target)
        if not path.is_file():
            raise click.BadParameter(f"{target!r} is neither oci://... nor a file",
                                     param_hint="TARGET")
        if module is None and name is not None:
            raise click.UsageError("--name goes with --module (signing a sidecar)")
        if module is None and path.suffix.lower() in (".toml", ".yaml", ".yml"):
            raise click.UsageError(
                f"{path.name} looks like a sidecar: its signature binds it to one module and "
                "one plugin name; give them: --module FILE.wasm|sha256:<hex> --name NAME")
        if module is not None:
            _sign_sidecar(path, module, name, key)
            return
        sig = path.with_name(path.name + ".sig")
        sig.write_bytes(sign_blob(key, path.read_bytes()))
        click.echo(str(sig))
        click.echo(f"signed {path.name} with key {fingerprint(key.public_key())[:19]}",
                   err=True)
        return
    ref = _parse_ref(target)
    signed = sign_artifact(ref, key, options=_options(_config(appdir), target, **registry))
    click.echo(str(signed.signature_ref))
    click.echo(f"signed {signed.reference} with key {signed.key[:19]}", err=True)


def _sign_sidecar(path: Path, module: str, name: str | None, key: Any) -> None:
    """SIDECAR.statement.json (the sidecar bound to ``module`` and ``name``) and
    SIDECAR.sig, its signature."""
    import hashlib
    import re

    from omnicore.oci.signing import MAX_SIDECAR_TEXT, fingerprint, sidecar_statement, sign_blob

    if re.fullmatch(r"sha256:[0-9a-f]{64}", module):
        digest = module
        if name is None:
            raise click.UsageError("--module sha256:... needs --name NAME")
    else:
        wasm = Path(module)
        if not wasm.is_file():
            raise click.BadParameter(f"{module!r} is neither a file nor sha256:<64 hex>",
                                     param_hint="--module")
        digest = "sha256:" + hashlib.sha256(wasm.read_bytes()).hexdigest()
        name = name or wasm.stem
    text = path.read_bytes()
    if len(text) > MAX_SIDECAR_TEXT:
        raise click.UsageError(f"{path} is over {MAX_SIDECAR_TEXT} bytes: a sidecar is "
                               "settings, not data")
    statement = sidecar_statement(digest, name, text)
    path.with_name(path.name + ".statement.json").write_bytes(statement)
    sig = path.with_name(path.name + ".sig")
    sig.write_bytes(sign_blob(key, statement))
    click.echo(str(sig))
    click.echo(f"signed {path.name} for plugin '{name}' module {digest[:19]} with key "
               f"{fingerprint(key.public_key())[:19]}", err=True)


@plugins_group.command("verify")
@click.argument("target")
@click.option("--key", "keys", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A trusted public key (repeatable; default: plugins.trust.keys).")
@click.option("--signature", "signature_file",
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="For a FILE: its signature (default: FILE.sig).")
@_registry_options
@_APP
def verify(target: str, keys: tuple[Path, ...], signature_file: Path | None, appdir: Path,
           **registry: Any) -> None:
    """Check that a trusted key signed TARGET (oci://... or a FILE); exit 1 with one line
    naming the digest and the key when none did."""
    import base64
    import hashlib

    from omnicore.oci import BlobSignature, is_reference, verify_ref
    from omnicore.oci import verify as verify_digest

    cfg = _config(appdir)
    policy = _policy(cfg, keys, always=True)
    if is_reference(target):
        ref = _parse_ref(target)
        verdict = verify_ref(ref, policy, options=_options(cfg, target, **registry))
    else:
        path = Path(target)
        if not path.is_file():
            raise click.BadParameter(f"{target!r} is neither oci://... nor a file",
                                     param_hint="TARGET")
        sig_path = signature_file or path.with_name(path.name + ".sig")
        signatures = []
        if sig_path.is_file():
            try:
                signatures.append(BlobSignature(base64.b64decode(sig_path.read_bytes().strip(),
                                                                 validate=True)))
            except ValueError:
                raise click.BadParameter(f"{sig_path} is not a base64 signature",
                                         param_hint="--signature") from None
        digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        verdict = verify_digest(digest, signatures, policy, plugin=path.stem)
    click.echo(f"verified: module {verdict.digest} {verdict.reason}")


@plugins_group.command("keygen")
@click.option("--out", "prefix", default="omnicore", show_default=True,
              help="Write PREFIX.key (private, mode 0600) and PREFIX.pub.")
@click.option("--force", is_flag=True, help="Replace existing key files.")
def keygen(prefix: str, force: bool) -> None:
    """Make an ECDSA P-256 signing key pair (cosign's kind), encrypted with
    $OMNICORE_SIGNING_PASSWORD when it is set."""
    from omnicore.oci import generate_key
    from omnicore.oci.signing import fingerprint, load_public_key

    private_path, public_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise click.ClickException(f"{path} exists; give --force to replace it")
    private, public = generate_key(_password())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    os.chmod(private_path, 0o600)
    public_path.write_bytes(public)
    # The paths as they must be written: omnicore.yaml reads a relative key path from the app
    # folder, not from the folder this shell is in.
    private_path, public_path = private_path.resolve(), public_path.resolve()
    click.echo(str(public_path))
    print_ = fingerprint(load_public_key(public))
    click.echo(f"wrote {private_path} (keep it secret{'' if _password() else ', unencrypted'}) "
               f"and {public_path}, key {print_[:19]}; trust it with plugins: {{trust: {{keys: "
               f"[{public_path}], require: true}}}} in {CONFIG_FILE} (a relative path there is "
               f"read from the app folder)", err=True)
