"""A private OCI registry for the tests: Debian's ``docker-registry`` (the CNCF distribution
server) on a free loopback port with a temporary storage folder, stopped at the end.

Optionally with basic auth (an htpasswd file from ``htpasswd -B``, apache2-utils), bearer
token auth (a token service here issuing ES256 JWTs whose signing certificate the registry
trusts), or TLS with a certificate from a private CA made here. A missing binary is an
error, not a skip: scripts/setup-toolchains.sh installs ``docker-registry`` and
``apache2-utils``.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.dbservers import free_port
from tests.waiting import Logged, eventually

__all__ = ["REGISTRY", "Registry", "TokenService", "make_ca"]

REGISTRY = "/usr/bin/docker-registry"
USER, PASSWORD = "pusher", "reg-Secret-5521"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return bytes(obj.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


def make_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 and localhost it signed:
    (ca.pem, server.pem, server.key) in ``folder``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("omnicore test CA", ca_key, "omnicore test CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("127.0.0.1", key, "omnicore test CA", ca_key, ca=False)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(_pem(ca))
    paths[1].write_bytes(_pem(cert))
    paths[2].write_bytes(_pem(key))
    return paths


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """The token service of the distribution spec's bearer flow: ``GET /token?service=&scope=``
    with Basic ``USER:PASSWORD`` answers a JWT granting the scopes asked; anonymous callers
    get pull only. ``requests`` counts the tokens issued."""

    service = "omnicore-test-registry"
    issuer = "omnicore-test-token-service"

    def __init__(self, folder: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = _cert("token signer", self.key, "token signer", self.key, ca=True)
        self.bundle = folder / "token-signer.pem"
        self.bundle.write_bytes(_pem(self.cert))
        self.requests = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                auth = self.headers.get("Authorization", "")
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if auth and auth != expected:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                access = []
                for scope in query.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    allowed = actions.split(",") if auth else [a for a in actions.split(",")
                                                               if a == "pull"]
                    access.append({"type": kind, "name": name, "actions": allowed})
                service.requests += 1
                body = json.dumps({"token": service.token(access)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, access: list[dict[str, Any]]) -> str:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": USER, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}." \
                        f"{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(),
                                                  ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Registry:
    """A running registry at ``host`` (``127.0.0.1:PORT``); ``ca`` is its CA file under TLS."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    tls: bool = False
    ca: Path | None = None
    token: TokenService | None = None
    log: Path = field(default=Path())

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ref(self, path: str) -> str:
        """``oci://127.0.0.1:PORT/<path>``."""
        return f"oci://{self.host}/{path}"

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @classmethod
    def start(cls, *, basic: bool = False, bearer: bool = False, tls: bool = False
              ) -> Registry:
        if not Path(REGISTRY).exists():
            raise RuntimeError(f"{REGISTRY} not found: install Debian's docker-registry "
                               "(scripts/setup-toolchains.sh does)")
        root = Path(tempfile.mkdtemp(prefix="omnicore-registry-"))
        port = free_port()
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
        }
        token = None
        ca = None
        if basic:
            line = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True,
                                  capture_output=True, timeout=30).stdout
            (root / "htpasswd").write_bytes(line.strip() + b"\n")
            config["auth"] = {"htpasswd": {"realm": "omnicore-test",
                                           "path": str(root / "htpasswd")}}
        elif bearer:
            token = TokenService(root)
            config["auth"] = {"token": {"realm": token.realm, "service": token.service,
                                        "issuer": token.issuer,
                                        "rootcertbundle": str(token.bundle)}}
        if tls:
            ca, cert, key = make_ca(root)
            config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
        (root / "config.yml").write_text(json.dumps(config))  # YAML reads JSON
        log = root / "registry.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([REGISTRY, "serve", str(root / "config.yml")],
                                    stdout=out, stderr=subprocess.STDOUT, cwd=root)
        registry = cls(root, port, proc, tls, ca, token, log)
        registry._wait()
        return registry

    def _wait(self) -> None:
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca)) if self.ca else None
        def answers() -> bool:
            try:
                urllib.request.urlopen(f"{self.base}/v2/", timeout=1, context=context)
            except urllib.error.HTTPError:
                pass  # 401 under auth: it answers
            except OSError:
                return False
            return True

        eventually(answers, f"docker-registry answering on {self.port}",
                   watch=[Logged(self.proc, self.log)])

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(20)
            if self.token is not None:
                self.token.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
