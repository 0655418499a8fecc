"""Who is asking: sessions (browser), API tokens (scripts, the CLI), and CSRF checks.

* A browser signs in with a password and gets a fresh random session id in an ``HttpOnly``,
  ``SameSite=Strict`` cookie; the id is minted at sign-in and never taken from the request
  (no session fixation), and sign-out deletes it on the server.
* Every state-changing request made with the session cookie must carry the session's CSRF
  token (form field ``csrf`` or header ``X-CSRF-Token``). The sign-in form itself uses a
  double-submit cookie, so a third-party page cannot sign a browser into another account.
* Scripts send ``Authorization: Bearer <token>``; bearer requests carry no ambient
  authority, so they need no CSRF token. ``omnicore run`` also mints a per-process *local*
  token into ``<data_dir>/console.json`` (mode 0600) for the CLI on the same machine.
* ``console.auth: false`` treats every request as an admin; the console refuses to start
  like that on anything but a loopback address.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from omnicore.console.errors import ApiError
from omnicore.console.throttle import LoginThrottle
from omnicore.console.users import Role, User, UserStore

__all__ = ["SESSION_COOKIE", "Auth", "Principal"]

SESSION_COOKIE = "omnicore_session"
LOGIN_CSRF_COOKIE = "omnicore_login_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    user: User
    via: Literal["session", "token", "open"]
    csrf: str | None = None
    session_id: str | None = None


class Auth:
    def __init__(self, store: UserStore, *, enabled: bool = True, session_ttl_s: float = 43200,
                 secure_cookies: bool = False) -> None:
        self.store = store
        self.enabled = enabled
        self.session_ttl_s = session_ttl_s
        self.secure_cookies = secure_cookies
        self.throttle = LoginThrottle()
        #: For the CLI on this machine; lives as long as this process.
        self.local_token = "oc_local_" + secrets.token_urlsafe(32)

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
            return Principal(User("operator", "admin"), "open")
        return None

    def bearer_user(self, secret: str) -> User | None:
        """The user whose API token (or this process's local token) ``secret`` is; None if
        it is none (revoked or mistyped). ``/mcp`` authenticates with this alone."""
        if hmac.compare_digest(secret.encode(), self.local_token.encode()):
            return User("local", "admin")
        return self.store.token_user(secret)

    def require(self, request: Request, role: Role = "viewer",
                csrf: str | None = None) -> Principal:
        """The principal, checked for ``role`` and (sessions, unsafe methods) CSRF."""
        who = self.principal(request)
        if who is None:
            raise ApiError(401, "sign in first (session cookie) or send "
                                "'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
        if who.via == "session" and request.method not in SAFE_METHODS:
            sent = csrf or request.headers.get("x-csrf-token", "")
            if not sent or not hmac.compare_digest(sent.encode(), (who.csrf or "").encode()):
                raise ApiError(403, "missing or wrong CSRF token; reload the page and try "
                                    "again", type="CsrfFailed")
        if role == "admin" and not who.user.is_admin:
            raise ApiError(403, f"user '{who.user.name}' is a viewer; this needs an admin",
                           type="Forbidden")
        return who

    # -- sign-in ------------------------------------------------------------------------

    def sign_in(self, request: Request, name: str, password: str) -> tuple[str, User]:
        """Check the password (throttled); a new session id for the cookie."""
        client = request.client.host if request.client else "?"
        keys = (f"user:{name.lower()[:64]}", f"ip:{client}")
        wait = self.throttle.retry_after(*keys)
        if wait > 0:
            raise ApiError(429, f"too many failed sign-ins; try again in {int(wait) + 1} s",
                           headers={"Retry-After": str(int(wait) + 1)})
        user = self.store.authenticate(name, password)
        if user is None:
            self.throttle.failed(*keys)
            raise ApiError(401, "wrong user name or password", type="BadCredentials")
        self.throttle.succeeded(keys[0])
        sid, _ = self.store.new_session(user, self.session_ttl_s)
        return sid, user

    def set_session_cookie(self, response: Response, sid: str) -> None:
        response.set_cookie(SESSION_COOKIE, sid, max_age=int(self.session_ttl_s), httponly=True,
                            samesite="strict", secure=self.secure_cookies, path="/")

    def clear_session(self, request: Request, response: Response) -> None:
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            self.store.end_session(sid)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")

    def login_csrf(self, request: Request) -> str:
        """The double-submit token for the sign-in form (reused while its cookie lives)."""
        return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)

    def set_login_csrf(self, response: Response, token: str) -> None:
        response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True,
                            samesite="strict", secure=self.secure_cookies, path="/")

    def check_login_csrf(self, request: Request, sent: str) -> None:
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
            raise ApiError(403, "the sign-in form expired or came from another site; reload "
                                "the page and try again", type="CsrfFailed")
