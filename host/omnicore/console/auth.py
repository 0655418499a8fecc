"""Who is asking: sessions (browser), API tokens (scripts, the CLI), and CSRF checks.

* A browser signs in with a password and gets a fresh random session id in an ``HttpOnly``,
  ``SameSite=Strict`` cookie (``Secure`` too behind TLS: :meth:`Auth.secure`); the id is
  minted at sign-in and never taken from the request (no session fixation), and sign-out
  deletes it on the server.
* Every state-changing request made with the session cookie must carry the session's CSRF
  token (form field ``csrf`` or header ``X-CSRF-Token``). The sign-in form itself uses a
  double-submit cookie, so a third-party page cannot sign a browser into another account.
* Scripts send ``Authorization: Bearer <token>``; bearer requests carry no ambient
  authority, so they need no CSRF token. ``omnicore run`` also mints a per-process *local*
  token into ``<data_dir>/console.json`` (mode 0600) for the CLI on the same machine.
* ``console.auth: false`` treats every request as an admin; the console refuses to start
  like that on anything but a loopback address, and a change from a browser still needs the
  process's CSRF token (the pages carry it), because any web page can post to loopback.
* Identity first, body second: routes call :meth:`Auth.identify` before reading a body and
  check the CSRF token (often a form field) after.
* Passwords are checked on a few threads of their own (argon2 is built to be slow), so a flood
  of sign-ins cannot take the threads every other request needs; each attempt is counted
  before its password is checked, so parallel guesses cannot outrun the throttle.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Literal, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from omnicore.accounts.users import Role, User, UserStore
from omnicore.console.errors import ApiError
from omnicore.console.throttle import LoginThrottle

__all__ = ["SESSION_COOKIE", "Auth", "Principal"]

T = TypeVar("T")

SESSION_COOKIE = "omnicore_session"
LOGIN_CSRF_COOKIE = "omnicore_login_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Content types a page on any site may post without asking (CORS "simple" requests).
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data",
                        "text/plain"})
#: Sign-ins waiting for the password threads beyond this are told to come back.
MAX_WAITING_SIGN_INS = 64
#: The user of this process's local token (frozen: one for every request that sends it).
_LOCAL = User("local", "admin")


@dataclass(frozen=True)
class Principal:
    user: User
    via: Literal["session", "token", "open"]
    csrf: str | None = None
    session_id: str | None = None


class Auth:
    def __init__(self, store: UserStore, *, enabled: bool = True, session_ttl_s: float = 43200,
                 secure_cookies: bool | None = None,
                 trusted_proxies: Iterable[str] = ("127.0.0.1", "::1"),
                 password_workers: int = 2) -> None:
        """``secure_cookies`` None: ``Secure`` when the request came over https, as told by
        the scheme or by ``X-Forwarded-Proto`` from one of ``trusted_proxies``."""
        self.store = store
        self.enabled = enabled
        self.session_ttl_s = session_ttl_s
        self.secure_cookies = secure_cookies
        self.trusted_proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.throttle = LoginThrottle()
        #: For the CLI on this machine; lives as long as this process.
        self.local_token = "oc_local_" + secrets.token_urlsafe(32)
        #: The CSRF token of an open console (``console.auth: false``), for its pages.
        self.open_csrf = secrets.token_urlsafe(32)
        self._passwords = ThreadPoolExecutor(password_workers,
                                             thread_name_prefix="omnicore-passwords")
        self._waiting = 0
        self._waiting_lock = threading.Lock()

    def close(self) -> None:
        self._passwords.shutdown(wait=False, cancel_futures=True)

    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() == "bearer" and secret:
            user = self.bearer_user(secret.strip())
            if user is None:
                raise ApiError(401, "the API token is not valid (revoked or mistyped)",
                               headers={"WWW-Authenticate": "Bearer"})
            return Principal(user, "token")
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            session = self.store.session(sid)
            if session is not None:
                return Principal(session.user, "session", session.csrf, sid)
        if not self.enabled:
            return Principal(User("operator", "admin"), "open", self.open_csrf)
        return None

    def bearer_user(self, secret: str) -> User | None:
        """The user whose API token (or this process's local token) ``secret`` is; None if
        it is none (revoked or mistyped). ``/mcp`` authenticates with this alone."""
        if hmac.compare_digest(secret.encode(), self.local_token.encode()):
            return _LOCAL
        return self.store.token_user(secret)

    def identify(self, request: Request, role: Role = "viewer") -> Principal:
        """The principal, checked for ``role`` (no CSRF check yet: it may be in the body)."""
        who = self.principal(request)
        if who is None:
            raise ApiError(401, "sign in first (session cookie) or send "
                                "'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
        if role == "admin" and not who.user.is_admin:
            raise ApiError(403, f"user '{who.user.name}' is a viewer; this needs an admin",
                           type="Forbidden")
        return who

    def check_csrf(self, request: Request, who: Principal, sent: str | None = None) -> None:
        """A change needs the CSRF token when made with a session, or on an open console by a
        browser (``sent``: the form's field; else the ``X-CSRF-Token`` header)."""
        if request.method in SAFE_METHODS or who.via == "token":
            return
        if who.via == "open" and not _from_browser(request):
            return
        sent = sent or request.headers.get("x-csrf-token", "")
        if not sent or not hmac.compare_digest(sent.encode(), (who.csrf or "").encode()):
            raise ApiError(403, "missing or wrong CSRF token; reload the page and try again "
                                "(scripts: send the X-CSRF-Token of GET /api/v1/me)",
                           type="CsrfFailed")

    def require(self, request: Request, role: Role = "viewer",
                csrf: str | None = None) -> Principal:
        """The principal, checked for ``role`` and (changes) the CSRF token."""
        who = self.identify(request, role)
        self.check_csrf(request, who, csrf)
        return who

    # -- passwords ----------------------------------------------------------------------

    async def hashing(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` (argon2 work) on the password threads; 503 when too many already wait."""
        with self._waiting_lock:
            if self._waiting >= MAX_WAITING_SIGN_INS:
                raise ApiError(503, "too many sign-ins at once; try again in a few seconds",
                               headers={"Retry-After": "5"})
            self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._passwords, partial(fn, *args))
        finally:
            with self._waiting_lock:
                self._waiting -= 1

    # -- sign-in ------------------------------------------------------------------------

    async def sign_in(self, request: Request, name: str, password: str) -> tuple[str, User]:
        """Check the password (throttled); a new session id for the cookie."""
        client = request.client.host if request.client else "?"
        account, address = f"user:{name.lower()[:64]}", f"ip:{client}"
        wait = self.throttle.attempt(account, address)
        if wait > 0:
            raise ApiError(429, f"too many failed sign-ins; try again in {int(wait) + 1} s",
                           headers={"Retry-After": str(int(wait) + 1)})
        user = await self.hashing(self.store.authenticate, name, password)
        if user is None:
            raise ApiError(401, "wrong user name or password", type="BadCredentials")
        self.throttle.succeeded(account, address)
        loop = asyncio.get_running_loop()
        sid, _ = await loop.run_in_executor(None, self.store.new_session, user,
                                            self.session_ttl_s)
        return sid, user

    def secure(self, request: Request) -> bool:
        """Whether cookies get ``Secure``: the setting, or (auto) whether the browser is on
        https, which only a trusted proxy may tell with ``X-Forwarded-Proto``."""
        if self.secure_cookies is not None:
            return self.secure_cookies
        if request.url.scheme == "https":
            return True
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return proto == "https" and self._trusted(request)

    def _trusted(self, request: Request) -> bool:
        try:
            peer = ipaddress.ip_address(request.client.host if request.client else "")
        except ValueError:
            return False
        return any(peer in net for net in self.trusted_proxies)

    def set_session_cookie(self, request: Request, response: Response, sid: str) -> None:
        response.set_cookie(SESSION_COOKIE, sid, max_age=int(self.session_ttl_s), httponly=True,
                            samesite="strict", secure=self.secure(request), path="/")

    def clear_session(self, request: Request, response: Response) -> None:
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            self.store.end_session(sid)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                               secure=self.secure(request))

    def login_csrf(self, request: Request) -> str:
        """The double-submit token for the sign-in form (reused while its cookie lives)."""
        return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)

    def set_login_csrf(self, request: Request, response: Response, token: str) -> None:
        response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True,
                            samesite="strict", secure=self.secure(request), path="/")

    def check_login_csrf(self, request: Request, sent: str) -> None:
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
            raise ApiError(403, "the sign-in form expired or came from another site; reload "
                                "the page and try again", type="CsrfFailed")


def _from_browser(request: Request) -> bool:
    """Whether a request may come from a web page: browsers add these headers (a page cannot
    remove them), and a page can post only the form content types without asking first."""
    headers = request.headers
    if any(h in headers for h in ("origin", "sec-fetch-site", "sec-fetch-mode", "cookie")):
        return True
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    return kind in FORM_TYPES
