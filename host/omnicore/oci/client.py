"""A small client of the OCI distribution API: manifests and blobs, bounded and verified.

Only what pushing and pulling a plugin needs: ``GET``/``PUT`` of manifests, ``HEAD``/``GET``
of blobs and the two-step blob upload (``POST`` then ``PUT ?digest=``). Over urllib3 (a
dependency already) rather than the ``oras`` package, because every pull here must be held
to things ``oras`` leaves to its caller (specs/registry.md, "Why not oras"):

* every byte pulled is checked against the digest that named it (a manifest fetched by tag
  against the registry's ``Docker-Content-Digest`` too), and a blob against its size;
* manifests over ``max_manifest_bytes`` and blobs over ``max_blob_bytes`` are refused from
  their descriptor or ``Content-Length`` before they are read, and counted as they stream;
* every wait (connect, each read) is bounded by ``timeout_s`` and one operation as a whole by
  ``deadline_s`` (a registry that drips a byte at a time ends there);
* redirects are followed (blob stores live elsewhere) up to ``max_redirects``, a loop is
  refused, and credentials never travel to another origin (scheme, host and port: an
  ``https`` origin's token is not sent to the same host over ``http``); an ``https``
  registry's redirect to plain ``http`` is refused unless that host may be reached so;
* credentials go to the registry's token service (its ``realm``, often another host, as
  Docker Hub's ``auth.docker.io``) only over ``https``, or over plain ``http`` to a host this
  client reaches over plain HTTP anyway (``plain_http``, loopback); a token service's own
  redirect is followed with credentials only within its origin;
* a private CA is trusted beside the system's (``ca_file``).

Plain HTTP is used for a host in ``plain_http`` and for a loopback host when no CA is given
(as Docker treats ``localhost``); everything else is HTTPS. These are what docker and
containerd do for an operator's credentials (specs/registry.md §3, "Credentials").
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import HTTPError as Urllib3Error

from omnicore.oci.auth import Challenge, Credentials, find_credentials, parse_challenge
from omnicore.oci.errors import ArtifactRefused, RegistryAuthError, RegistryError, RegistryNotFound
from omnicore.oci.reference import Reference

__all__ = ["Options", "RegistryClient", "sha256_digest"]

_CHUNK = 1024 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ERROR_BODY_BYTES = 64 * 1024
_TOKEN_BODY_BYTES = 1024 * 1024


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Options:
    """How registries are reached; the ``registry.*`` config keys (specs/registry.md)."""

    #: A PEM file of CA certificates trusted beside the system's (a private registry's CA).
    ca_file: Path | None = None
    #: Registries (``host`` or ``host:port``) reached over plain HTTP.
    plain_http: frozenset[str] = frozenset()
    #: The longest one wait may take: connecting, and each read.
    timeout_s: float = 30.0
    #: The longest one push, pull, sign or verify may take as a whole.
    deadline_s: float = 600.0
    max_manifest_bytes: int = 4 * 1024 * 1024
    max_blob_bytes: int = 256 * 1024 * 1024
    #: The Docker config file to read credentials from (default: $DOCKER_CONFIG, ~/.docker).
    docker_config: Path | None = None
    #: Credentials given outright (``--username``/``--password-stdin``): they win.
    credentials: Credentials | None = field(default=None, repr=False)
    max_redirects: int = 5

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> Options:
        """The options ``registry.*`` (``omnicore.config.schema.RegistryConfig``) give, with
        ``overrides`` (a CLI flag) over them; None overrides are ignored."""
        values: dict[str, Any] = {}
        if cfg is not None:
            values = {"ca_file": cfg.ca_file, "plain_http": frozenset(cfg.plain_http),
                      "timeout_s": cfg.timeout_s, "deadline_s": cfg.deadline_s,
                      "max_manifest_bytes": cfg.max_manifest_bytes,
                      "max_blob_bytes": cfg.max_blob_bytes, "docker_config": cfg.docker_config}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, the default port filled in: what "the same origin"
    compares."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port if port is not None else default


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RegistryClient:
    """The distribution API of one registry, for one operation (its deadline starts here).

    ``what`` is how messages name the operation (``pull oci://...``). Use as a context
    manager, or :meth:`close`.
    """

    def __init__(self, ref: Reference, options: Options | None = None, *,
                 what: str | None = None) -> None:
        self.ref = ref
        self.options = opts = options or Options()
        self.what = what or str(ref)
        self._deadline = time.monotonic() + opts.deadline_s
        plain = ref.registry in opts.plain_http or ref.hostname in opts.plain_http or (
            opts.ca_file is None and _is_loopback(ref.hostname))
        self.base = f"{'http' if plain else 'https'}://{ref.api_host}"
        # Loading the system's CA bundle costs ~30 ms: once per process, and only for TLS.
        context = None
        if not plain or opts.ca_file is not None:
            try:
                context = _tls_context(str(opts.ca_file) if opts.ca_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise RegistryError(f"cannot {self.what}: the CA file {opts.ca_file} cannot be "
                                    f"read as PEM certificates ({exc})",
                                    reference=str(ref)) from None
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=2, ssl_context=context,
                                         retries=False)
        self._creds_looked_up = opts.credentials is not None
        self._creds = opts.credentials
        self._basic: str | None = None
        self._tokens: dict[str, str] = {}

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None
                 ) -> None:
        self.close()

    def close(self) -> None:
        self._pool.clear()

    # ---- manifests -------------------------------------------------------------------

    def get_manifest(self, ref: str, accept: tuple[str, ...], *,
                     repository: str | None = None) -> tuple[bytes, str, str]:
        """The manifest ``ref`` (a tag or digest) names: its bytes, verified digest and media
        type. A manifest by digest must hash to it; by tag, to the registry's
        ``Docker-Content-Digest`` when it sends one."""
        repo = repository or self.ref.repository
        resp = self._send("GET", f"/v2/{repo}/manifests/{ref}",
                          headers={"Accept": ", ".join(accept)}, push=False)
        try:
            if resp.status != 200:
                self._fail(resp, f"the manifest {ref}")
            data = self._read(resp, self.options.max_manifest_bytes, f"the manifest {ref}",
                              "registry.max_manifest_bytes")
            digest = sha256_digest(data)
            if ref.startswith("sha256:") and ref != digest:
                raise ArtifactRefused(f"cannot {self.what}: the registry answered a manifest "
                                      f"whose digest is {digest}, not the {ref} asked for; "
                                      "it is not the artifact named", reference=str(self.ref))
            claimed = resp.headers.get("Docker-Content-Digest", "")
            if claimed.startswith("sha256:") and claimed != digest:
                raise ArtifactRefused(f"cannot {self.what}: the registry says the manifest's "
                                      f"digest is {claimed} but it hashes to {digest}; refused",
                                      reference=str(self.ref))
            media = resp.headers.get("Content-Type", "").split(";")[0].strip()
            return data, digest, media
        finally:
            _done(resp)

    def put_manifest(self, ref: str, data: bytes, media_type: str, *,
                     repository: str | None = None) -> str:
        """Store ``data`` as the manifest ``ref`` (a tag or its digest); its digest."""
        repo = repository or self.ref.repository
        digest = sha256_digest(data)
        resp = self._send("PUT", f"/v2/{repo}/manifests/{ref}",
                          headers={"Content-Type": media_type}, body=data, push=True)
        try:
            if resp.status not in (200, 201, 202):
                self._fail(resp, f"storing the manifest {ref}")
            claimed = resp.headers.get("Docker-Content-Digest", "")
            if claimed.startswith("sha256:") and claimed != digest:
                raise ArtifactRefused(f"cannot {self.what}: the registry stored the manifest "
                                      f"as {claimed}, not as {digest} it was sent as",
                                      reference=str(self.ref))
            return digest
        finally:
            _done(resp)

    # ---- blobs -----------------------------------------------------------------------

    def has_blob(self, digest: str, *, repository: str | None = None) -> bool:
        repo = repository or self.ref.repository
        resp = self._send("HEAD", f"/v2/{repo}/blobs/{digest}", push=True)
        try:
            if resp.status == 200:
                return True
            if resp.status == 404:
                return False
            self._fail(resp, f"the blob {digest[:19]}")
        finally:
            _done(resp)

    def put_blob(self, data: bytes, *, digest: str | None = None,
                 repository: str | None = None) -> str:
        """Upload ``data`` unless the repository has it; its digest."""
        repo = repository or self.ref.repository
        digest = digest or sha256_digest(data)
        if self.has_blob(digest, repository=repo):
            return digest
        resp = self._send("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"},
                          body=b"", push=True)
        try:
            if resp.status != 202 or not resp.headers.get("Location"):
                self._fail(resp, "starting an upload")
            location = urljoin(self._url_of(resp), resp.headers["Location"])
        finally:
            _done(resp)
        sep = "&" if urlsplit(location).query else "?"
        resp = self._send("PUT", f"{location}{sep}{urlencode({'digest': digest})}",
                          headers={"Content-Type": "application/octet-stream"}, body=data,
                          push=True)
        try:
            if resp.status not in (201, 204):
                self._fail(resp, f"uploading the blob {digest[:19]}")
        finally:
            _done(resp)
        return digest

    def get_blob(self, digest: str, size: int | None, *, cap: int | None = None,
                 cap_key: str = "registry.max_blob_bytes", what: str | None = None,
                 repository: str | None = None) -> bytes:
        """The blob ``digest`` names, checked against it (and ``size`` when given); over
        ``cap`` (default ``max_blob_bytes``) it is refused before or while it is read."""
        repo = repository or self.ref.repository
        cap = self.options.max_blob_bytes if cap is None else cap
        label = what or f"the blob {digest[:19]}"
        if size is not None and size > cap:
            raise ArtifactRefused(f"cannot {self.what}: {label} is {size} bytes, over the "
                                  f"{cap} {cap_key} allows", reference=str(self.ref))
        resp = self._send("GET", f"/v2/{repo}/blobs/{digest}", push=False)
        try:
            if resp.status != 200:
                self._fail(resp, label)
            limit = cap if size is None else min(cap, size)
            hasher = hashlib.sha256()
            data = self._read(resp, limit, label, cap_key if size is None or size > cap
                              else "its descriptor's size", hasher)
        finally:
            _done(resp)
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            raise ArtifactRefused(f"cannot {self.what}: the registry sent {label} with digest "
                                  f"{actual}, not {digest}; refused (corrupted or altered on "
                                  "the way)", reference=str(self.ref))
        if size is not None and len(data) != size:
            raise ArtifactRefused(f"cannot {self.what}: {label} is {len(data)} bytes, not the "
                                  f"{size} its descriptor says", reference=str(self.ref))
        return data

    # ---- the exchange ----------------------------------------------------------------

    def _left(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise RegistryError(f"cannot {self.what}: the registry {self.ref.registry} is too "
                                f"slow: not done within {self.options.deadline_s:g} s "
                                "(registry.deadline_s)", reference=str(self.ref))
        return left

    def _timeout(self) -> urllib3.Timeout:
        wait = min(self.options.timeout_s, self._left())
        return urllib3.Timeout(connect=wait, read=wait)

    def _raw(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
             *, redirect: bool = False) -> urllib3.BaseHTTPResponse:
        host = urlsplit(url).netloc
        try:
            return self._pool.urlopen(method, url, body=body, headers=headers,
                                      redirect=redirect, retries=False, preload_content=False,
                                      timeout=self._timeout())
        except Exception as exc:
            raise self._transport_error(exc, host) from None

    def _transport_error(self, exc: BaseException, host: str) -> RegistryError:
        if isinstance(exc, MaxRetryError) and exc.reason is not None:
            exc = exc.reason
        start = f"cannot {self.what}: "
        if isinstance(exc, NewConnectionError):  # a ConnectTimeoutError in urllib3's tree
            text = f"cannot reach the registry {host} ({_short(exc).split(': ', 1)[-1]})"
        elif isinstance(exc, ConnectTimeoutError | ReadTimeoutError | TimeoutError):
            text = (f"the registry {host} did not answer within "
                    f"{self.options.timeout_s:g} s (registry.timeout_s)")
        elif isinstance(exc, SSLError | ssl.SSLError):
            why = str(exc).split("] ", 1)[-1].split(" (_ssl")[0][:160]
            text = (f"TLS with {host} failed ({why}); a private registry's CA goes in "
                    "--ca-file or registry.ca_file")
        elif isinstance(exc, ConnectionError | OSError):
            text = f"cannot reach the registry {host} ({_short(exc)})"
        elif isinstance(exc, ProtocolError | Urllib3Error):
            text = f"the registry {host} broke off the exchange ({_short(exc)})"
        else:
            text = f"talking to the registry {host} failed ({type(exc).__name__}: {_short(exc)})"
        return RegistryError(start + text, reference=str(self.ref))

    def plain_allowed(self, url: str) -> bool:
        """Whether this client may talk plain HTTP to ``url``'s host: it is in
        ``plain_http`` (``host`` or ``host:port``), or a loopback one and no CA is given."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        opts = self.options
        return host in opts.plain_http or parts.netloc.lower() in opts.plain_http or (
            opts.ca_file is None and _is_loopback(host))

    def _send(self, method: str, path: str, *, headers: dict[str, str] | None = None,
              body: bytes | None = None, push: bool) -> urllib3.BaseHTTPResponse:
        """One request, answering the registry's challenge once and following redirects;
        the response is unread (the caller reads and releases it)."""
        url = path if "://" in path else self.base + path
        origin = _origin(self.base)
        scope = f"repository:{self.ref.repository}:{'pull,push' if push else 'pull'}"
        seen = {url}
        answered = False
        hops = 0
        while True:
            sent = dict(headers or {})
            same_origin = _origin(url) == origin
            if same_origin:
                auth = self._tokens.get(scope) or self._basic
                if auth:
                    sent["Authorization"] = auth
            resp = self._raw(method, url, sent, body)
            resp_url = url
            if resp.status == 401 and same_origin and not answered:
                challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                _drain(resp)
                self._answer(challenge, scope)
                answered = True
                continue
            location = resp.headers.get("Location") if resp.status in _REDIRECTS else None
            if location:
                _drain(resp)
                nxt = urljoin(url, location)
                hops += 1
                if nxt in seen:
                    raise RegistryError(f"cannot {self.what}: the registry redirects in a loop "
                                        f"({_clip(url)} -> {_clip(nxt)}); refused",
                                        reference=str(self.ref))
                if hops > self.options.max_redirects:
                    raise RegistryError(f"cannot {self.what}: more than "
                                        f"{self.options.max_redirects} redirects from "
                                        f"{_clip(path)}; refused", reference=str(self.ref))
                if urlsplit(url).scheme == "https" and urlsplit(nxt).scheme == "http" \
                        and not self.plain_allowed(nxt):
                    raise RegistryError(f"cannot {self.what}: the registry redirects from "
                                        f"https to plain http ({_clip(nxt)}); refused (name "
                                        "that host in registry.plain_http if it is meant)",
                                        reference=str(self.ref))
                seen.add(nxt)
                url = nxt
                if resp.status == 303:
                    method, body = "GET", None
                continue
            resp._omnicore_url = resp_url  # type: ignore[attr-defined]
            return resp

    @staticmethod
    def _url_of(resp: urllib3.BaseHTTPResponse) -> str:
        return str(getattr(resp, "_omnicore_url", ""))

    def _credentials(self) -> Credentials | None:
        if not self._creds_looked_up:
            self._creds_looked_up = True
            try:
                self._creds = find_credentials(self.ref.registry,
                                               config=self.options.docker_config)
            except ValueError as exc:
                raise RegistryAuthError(f"cannot {self.what}: {exc}",
                                        reference=str(self.ref)) from None
        return self._creds

    def _answer(self, challenge: Challenge | None, scope: str) -> None:
        """Get what the challenge asks for: Basic credentials, or a Bearer token."""
        creds = self._credentials()
        host = self.ref.registry
        if challenge is None:
            raise RegistryAuthError(f"cannot {self.what}: the registry {host} asks for "
                                    "authentication in a way this client does not answer "
                                    "(neither Basic nor Bearer)", reference=str(self.ref))
        if challenge.scheme == "basic":
            if creds is None or not creds.username:
                raise self._no_credentials()
            self._basic = creds.basic()
            return
        self._tokens[scope] = "Bearer " + self._token(challenge, scope, creds)

    def _no_credentials(self) -> RegistryAuthError:
        host = self.ref.registry
        return RegistryAuthError(f"cannot {self.what}: the registry {host} asks for "
                                 f"credentials and none were found (`docker login {host}` "
                                 "writes them to ~/.docker/config.json, or give --username "
                                 "and --password-stdin)", reference=str(self.ref))

    def _token(self, challenge: Challenge, scope: str, creds: Credentials | None) -> str:
        realm = challenge.params.get("realm", "")
        if urlsplit(realm).scheme not in ("http", "https"):
            raise RegistryAuthError(f"cannot {self.what}: the registry's token realm "
                                    f"{realm[:120]!r} is not an http(s) URL",
                                    reference=str(self.ref))
        scopes = [scope]
        asked = challenge.params.get("scope")
        if asked and asked not in scopes:
            scopes.append(asked)
        query = [("scope", s) for s in scopes]
        if challenge.params.get("service"):
            query.insert(0, ("service", challenge.params["service"]))
        secret = creds is not None and bool(creds.identity_token or creds.username)
        # Loopback counts as "reached over plain http anyway" only for a registry that is
        # itself reached so: an https registry naming http://127.0.0.1:<port> would send its
        # credentials in clear to whatever local process holds that port (any user may).
        # A realm host named in registry.plain_http is the operator's own choice.
        parts = urlsplit(realm)
        named = (parts.hostname or "").lower() in self.options.plain_http or \
            parts.netloc.lower() in self.options.plain_http
        plain_ok = named or (urlsplit(self.base).scheme == "http"
                             and self.plain_allowed(realm))
        if secret and parts.scheme == "http" and not plain_ok:
            raise RegistryAuthError(f"cannot {self.what}: the registry {self.ref.registry} "
                                    f"sends for a token to {_clip(realm)}, plain HTTP: the "
                                    f"credentials from {creds.source if creds else '-'} are "
                                    "not sent over it (as docker and containerd refuse); "
                                    "the token service must be https, or its host named in "
                                    "registry.plain_http", reference=str(self.ref))
        resp = self._token_request(realm, query, creds)
        try:
            if resp.status in (401, 403):
                if creds is None:
                    raise self._no_credentials()
                raise RegistryAuthError(f"cannot {self.what}: the token service of "
                                        f"{self.ref.registry} refused the credentials from "
                                        f"{creds.source} (HTTP {resp.status})",
                                        reference=str(self.ref))
            if resp.status != 200:
                raise RegistryAuthError(f"cannot {self.what}: the token service "
                                        f"{_clip(realm)} answered HTTP {resp.status}",
                                        reference=str(self.ref))
            raw = self._read(resp, _TOKEN_BODY_BYTES, "the token answer", "1 MiB")
        finally:
            _done(resp)
        try:
            doc = json.loads(raw)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryAuthError(f"cannot {self.what}: the token service {_clip(realm)} "
                                    "answered without a token", reference=str(self.ref))
        return token

    def _token_request(self, realm: str, query: list[tuple[str, str]],
                       creds: Credentials | None) -> urllib3.BaseHTTPResponse:
        """Ask the token service at ``realm``: an identity token as an OAuth2 refresh token
        (POST), else Basic credentials or none (GET). Its redirects are followed by hand: with
        credentials only within the realm's origin, never to plain http from https."""
        url, hops = realm, 0
        while True:
            headers: dict[str, str] = {}
            if creds is not None and creds.identity_token:
                form = urlencode([("grant_type", "refresh_token"), ("client_id", "omnicore"),
                                  ("refresh_token", creds.identity_token), *query])
                resp = self._raw("POST", url, {"Content-Type":
                                               "application/x-www-form-urlencoded"},
                                 form.encode())
            else:
                if creds is not None and creds.username:
                    headers["Authorization"] = creds.basic()
                sep = "&" if urlsplit(url).query else "?"
                target = url if hops else f"{url}{sep}{urlencode(query)}"
                resp = self._raw("GET", target, headers, None)
            location = resp.headers.get("Location") if resp.status in _REDIRECTS else None
            if not location:
                return resp
            _drain(resp)
            nxt = urljoin(url, location)
            hops += 1
            secret = creds is not None and bool(creds.identity_token or creds.username)
            downgrade = urlsplit(url).scheme == "https" and urlsplit(nxt).scheme == "http" \
                and not self.plain_allowed(nxt)
            if hops > self.options.max_redirects or downgrade or \
                    (secret and _origin(nxt) != _origin(realm)):
                why = f"more than {self.options.max_redirects} times" if hops > \
                    self.options.max_redirects else "from https to plain http" if downgrade \
                    else "to another origin, where the credentials would go"
                raise RegistryAuthError(f"cannot {self.what}: the token service "
                                        f"{_clip(realm)} redirects {why} ({_clip(nxt)}); "
                                        "not followed", reference=str(self.ref))
            url = nxt

    def _read(self, resp: urllib3.BaseHTTPResponse, cap: int, label: str,
              cap_key: str, hasher: Any = None) -> bytes:
        """The body, at most ``cap`` bytes (refused past it), hashed as it streams in."""
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdecimal() and int(length) > cap:
            raise ArtifactRefused(f"cannot {self.what}: {label} is {int(length)} bytes, over "
                                  f"the {cap} {cap_key} allows; refused before reading",
                                  reference=str(self.ref))
        out = bytearray()
        host = urlsplit(self._url_of(resp) or self.base).netloc
        while True:
            self._left()
            try:
                chunk = resp.read1(_CHUNK)
            except Exception as exc:
                raise self._transport_error(exc, host) from None
            if not chunk:
                break
            if hasher is not None:
                hasher.update(chunk)
            out += chunk
            if len(out) > cap:
                raise ArtifactRefused(f"cannot {self.what}: {label} runs past {cap} bytes "
                                      f"({cap_key}); refused", reference=str(self.ref))
        return bytes(out)

    def _fail(self, resp: urllib3.BaseHTTPResponse, label: str) -> NoReturn:
        """Raise the error an unexpected answer means, with the registry's own words."""
        try:
            raw = resp.read(_ERROR_BODY_BYTES, decode_content=True) or b""
        except Exception:
            raw = b""
        code = message = ""
        try:
            first = json.loads(raw)["errors"][0]
            code, message = str(first.get("code", "")), str(first.get("message", ""))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            message = raw[:200].decode("utf-8", "replace").strip()
        said = " ".join(f"{code} {message}".split())[:240]
        said = f" ({said})" if said else ""
        status = resp.status
        start = f"cannot {self.what}: "
        if status == 401:
            creds = self._credentials()
            if creds is None:
                raise self._no_credentials()
            raise RegistryAuthError(f"{start}the registry {self.ref.registry} refused the "
                                    f"credentials from {creds.source}{said}",
                                    reference=str(self.ref))
        if status == 403:
            raise RegistryAuthError(f"{start}the registry {self.ref.registry} denies this "
                                    f"(HTTP 403){said}", reference=str(self.ref))
        if status == 404:
            raise RegistryNotFound(f"{start}{label} is not in {self.ref.registry}/"
                                   f"{self.ref.repository}{said}", reference=str(self.ref))
        raise RegistryError(f"{start}the registry answered HTTP {status} for {label}{said}",
                            reference=str(self.ref))


def _done(resp: urllib3.BaseHTTPResponse) -> None:
    """Hand the connection back: read what is left of a small answer, else close it (a
    connection with an unread body would answer the next request with the old one)."""
    try:
        length = resp.headers.get("Content-Length", "")
        if resp.closed or (length.isdecimal() and int(length) <= _ERROR_BODY_BYTES):
            resp.drain_conn()
        else:
            resp.close()
    except Exception:
        resp.close()
    resp.release_conn()


_drain = _done  # a refused or redirected answer


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _clip(url: str) -> str:
    return url if len(url) <= 160 else url[:157] + "..."
