"""Accounts in the console: signing in and out, the one-time setup link, and users and API
tokens in the REST API (``/api/v1/users``, ``/api/v1/tokens``) and on the Users page.

The rules (names, passwords, hashing, tokens) are :mod:`omnicore.accounts.users`'; every
change is recorded in the audit trail (:mod:`omnicore.accounts.audit`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from omnicore.accounts.audit import Actor, record
from omnicore.accounts.users import check_password, check_username
from omnicore.console.base import actor, api, guarded, need, page_params, paginate, path_id, state
from omnicore.console.bodies import form_body, json_body
from omnicore.console.errors import ApiError, from_omni
from omnicore.console.render import done, page, read_form
from omnicore.console.responses import JSONResponse
from omnicore.errors import OmniError

__all__ = ["routes"]


# -- sign-in -------------------------------------------------------------------------------

def _safe_next(target: str | None) -> str:
    # Only a path on this site: "//evil.example" or "https://..." would be an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def login(request: Request) -> Response:
    st = state(request)
    error = None
    status = 200
    name = ""
    if request.method == "POST":
        fields = await form_body(request)
        name = fields.get("name", "")[:64]
        try:
            st.auth.check_login_csrf(request, fields.get("csrf", ""))
            sid, _user = await st.auth.sign_in(request, name, fields.get("password", ""))
        except ApiError as exc:
            if exc.status == 503:
                raise
            error, status = exc.message, exc.status
        else:
            back: Response = RedirectResponse(_safe_next(request.query_params.get("next")), 303)
            # Whatever session cookie came in is replaced, never reused: no fixation.
            st.auth.set_session_cookie(request, back, sid)
            return back
    token = st.auth.login_csrf(request)
    response = page(request, "login.html", status, who=None, error=error, name=name,
                    login_csrf=token, no_users=st.auth.store.count() == 0)
    st.auth.set_login_csrf(request, response, token)
    return response


async def logout(request: Request) -> Response:
    await read_form(request, admin=False)
    response = RedirectResponse("/login?done=signed-out", status_code=303)
    state(request).auth.clear_session(request, response)
    return response


async def setup(request: Request) -> Response:
    st = state(request)
    token = request.query_params.get("token", "")
    # Every host printed a link; once any of them made the first admin, each answers so and
    # sends its holder to sign in (nobody "used" the others: a 404 there read as a fault).
    if st.auth.store.had_users():
        return done("/login", "admin-exists")
    if not st.auth.store.setup_valid(token):
        raise ApiError(404, "this setup link is unknown or has expired (every host prints a "
                            "new one at start while no admin exists); or create the first "
                            "admin with `omnicore users add NAME --app DIR`", type="SetupUsed")
    error = None
    if request.method == "POST":
        fields = await form_body(request)
        try:
            st.auth.check_login_csrf(request, fields.get("csrf", ""))
            # Checked before the link is used up: a typo must not burn it.
            check_username(fields.get("name", ""))
            check_password(fields.get("password", ""))
            if fields.get("password") != fields.get("password2"):
                raise ApiError(422, "the two passwords differ")
            if not st.auth.store.consume_setup(token):
                if st.auth.store.had_users():  # another host's link made the admin first
                    return done("/login", "admin-exists")
                raise ApiError(404, "this setup link was used already")
            user = await st.auth.hashing(st.auth.store.add, fields["name"],
                                         fields["password"], "admin")
        except ApiError as exc:
            error = exc.message
        except OmniError as exc:
            error = str(exc)
        else:
            record(st.app.storage, Actor(user.name, request.client.host if request.client
                                         else None), "user.add", f"user:{user.name}", None,
                   {"role": user.role, "by": "setup link"})
            sid, _ = await st.off_loop(st.auth.store.new_session, user, st.auth.session_ttl_s)
            signed_in: Response = RedirectResponse("/", status_code=303)
            st.auth.set_session_cookie(request, signed_in, sid)
            return signed_in
    login_csrf = st.auth.login_csrf(request)
    response = page(request, "setup.html", 422 if error else 200, who=None, error=error,
                    login_csrf=login_csrf, token=token)
    st.auth.set_login_csrf(request, response, login_csrf)
    return response


# -- users and tokens ----------------------------------------------------------------------

@guarded
async def list_users(request: Request) -> Response:
    need(request, "admin")
    users = state(request).auth.store.users()
    return JSONResponse(paginate([{"name": u.name, "role": u.role, "created": u.created}
                                  for u in users], *page_params(request)))


@guarded
async def add_user(request: Request) -> Response:
    who = need(request, "admin")
    doc = await json_body(request)
    st = state(request)
    name, password, role = doc.get("name"), doc.get("password"), doc.get("role", "viewer")
    if not all(isinstance(v, str) for v in (name, password, role)):
        raise ApiError(422, "'name', 'password' and 'role' must be strings", type="ConfigError")
    user = await st.auth.hashing(st.auth.store.add, name, password, role)
    record(st.app.storage, actor(request, who), "user.add", f"user:{user.name}", None,
           {"role": user.role})
    return JSONResponse({"name": user.name, "role": user.role, "created": user.created},
                        status_code=201)


@guarded
async def delete_user(request: Request) -> Response:
    who = need(request, "admin")
    name = request.path_params["user"]
    if name == who.user.name:
        raise ApiError(409, "you cannot delete yourself; sign in as another admin",
                       type="Conflict")
    st = state(request)
    if not st.auth.store.delete(name):
        raise ApiError(404, f"no user {name[:64]!r}")
    record(st.app.storage, actor(request, who), "user.delete", f"user:{name}")
    return Response(status_code=204)


@guarded
async def list_tokens(request: Request) -> Response:
    who = need(request)
    store = state(request).auth.store
    tokens = store.tokens(None if who.user.is_admin else who.user.name)
    return JSONResponse(paginate([vars(t) for t in tokens], *page_params(request)))


@guarded
async def add_token(request: Request) -> Response:
    who = need(request, "admin")
    doc = await json_body(request)
    label = doc.get("label", "token")
    if not isinstance(label, str):
        raise ApiError(422, "'label' must be a string", type="ConfigError")
    if who.user.name in ("local", "operator"):
        raise ApiError(409, "tokens belong to users; sign in as one (omnicore users add)",
                       type="Conflict")
    st = state(request)
    secret, token = st.auth.store.new_token(who.user.name, label)
    record(st.app.storage, actor(request, who), "token.add", f"token:{token.id}", None,
           {"label": token.label, "user": token.user})
    return JSONResponse({**vars(token), "token": secret}, status_code=201)


@guarded
async def delete_token(request: Request) -> Response:
    who = need(request, "admin")
    raw = path_id(request, "token_id", "token")
    st = state(request)
    if not st.auth.store.delete_token(raw):
        raise ApiError(404, f"no token {raw}")
    record(st.app.storage, actor(request, who), "token.revoke", f"token:{raw}")
    return Response(status_code=204)


async def users_page(request: Request) -> Response:
    st = state(request)
    who = st.auth.require(request)
    store = st.auth.store
    return page(request, "users.html", users=store.users() if who.user.is_admin else [],
                tokens=store.tokens(None if who.user.is_admin else who.user.name),
                new_token=None, form_error=None)


async def users_post(request: Request) -> Response:
    st = state(request)
    who, f = await read_form(request)
    store = st.auth.store
    by = actor(request, who)
    action = f.get("action", "")
    new_token = None
    try:
        if action == "add-user":
            user = await st.auth.hashing(store.add, f.get("name", ""), f.get("password", ""),
                                         f.get("role", "viewer"))
            record(st.app.storage, by, "user.add", f"user:{user.name}", None,
                   {"role": user.role})
            return done("/users", "user")
        if action == "delete-user":
            if f.get("name") == who.user.name:
                raise ApiError(409, "you cannot delete yourself")
            if store.delete(f.get("name", "")):
                record(st.app.storage, by, "user.delete", f"user:{f.get('name')}")
            return done("/users", "user-deleted")
        if action == "new-token":
            if who.via != "session":
                raise ApiError(409, "sign in as a user to create tokens")
            new_token, token = store.new_token(who.user.name, f.get("label", ""))
            record(st.app.storage, by, "token.add", f"token:{token.id}", None,
                   {"label": token.label, "user": token.user})
        elif action == "delete-token":
            raw = f.get("id", "")
            if raw.isdecimal() and store.delete_token(int(raw)):
                record(st.app.storage, by, "token.revoke", f"token:{raw}")
            return done("/users", "token-deleted")
        else:
            raise ApiError(400, f"unknown action {action[:40]!r}")
        error = None
    except OmniError as exc:
        error = from_omni(exc)
    except ApiError as exc:
        error = exc
    return page(request, "users.html", error.status if error else 200, users=store.users(),
                tokens=store.tokens(), new_token=new_token, form_error=error)


def routes() -> list[BaseRoute]:
    return [
        *api("/users", GET=list_users, POST=add_user),
        *api("/users/{user}", DELETE=delete_user),
        *api("/tokens", GET=list_tokens, POST=add_token),
        *api("/tokens/{token_id}", DELETE=delete_token),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/setup", setup, methods=["GET", "POST"]),
        Route("/users", users_page, methods=["GET"]),
        Route("/users", users_post, methods=["POST"]),
    ]
