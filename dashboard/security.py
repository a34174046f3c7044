"""Who may see the wall and use the console (访问控制), and forgery protection (CSRF).

- The wall is read-only; `wall_access` decides who opens it: `open` (anyone), `token` (the
  `screen_token`, given once as `?token=` and then kept in the session) or `login` (a signed-in user).
- The console needs a session login (`/console/login`). Every state-changing request of a session
  (Dash callbacks, uploads, logout) must carry the session's CSRF token in the `X-CSRFToken` header:
  the token is also in the readable cookie `_csrf_token`, which the Dash renderer sends back as that
  header. A page of another site can neither read the cookie nor set the header.
- The API keeps its bearer tokens (never in cookies), so it needs no CSRF check.
"""
from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlparse

from flask import Flask, abort, jsonify, redirect, request, session
from sqlalchemy import select

from backend.domain.lifecycle import Actor
from backend.services.context import current
from backend.store import models as m

CSRF_COOKIE = "_csrf_token"
CSRF_HEADER = "X-CSRFToken"
USERS = m.User.__table__
CENTRE_ROLES = {"supervisor", "dispatcher", "leader", "admin", "operator"}
CONSOLE_ROLES = CENTRE_ROLES | {"department", "inspector"}
USER_TTL = 2.0

_users: dict[str, tuple[float, object]] = {}


@dataclass(frozen=True)
class SessionUser:
    actor: Actor
    display_name: str
    department_name: str | None

    @property
    def is_department(self) -> bool:
        return self.actor.role == "department"


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    tok = session.get("csrf")
    if not tok:
        tok = secrets.token_urlsafe(32)
        session["csrf"] = tok
    return tok


def csrf_ok(sent: str | None) -> bool:
    tok = session.get("csrf")
    return bool(tok and sent and hmac.compare_digest(str(tok), str(sent)))


def _user_row(username: str):
    hit = _users.get(username)
    now = time.monotonic()
    if hit is not None and now - hit[0] < USER_TTL:
        return hit[1]
    with current().reader.connect() as conn:
        row = conn.execute(select(USERS).where(USERS.c.username == username)).first()
    _users[username] = (now, row)
    return row


def login(username: str, password: str) -> SessionUser:
    """Check the password (Argon2id, rate-limited like the API) and open a session."""
    from backend.services import auth

    result = auth.issue_token(username, password, client=f"console|{request.remote_addr}")
    user = result["user"]
    row = _user_row(username)
    _users.pop(username, None)
    if user["role"] not in CONSOLE_ROLES:
        from backend.services import errors

        raise errors.Forbidden("this role has no console")
    session.clear()
    session["user"] = username
    session["tv"] = row.token_version if row is not None else None
    session.permanent = False
    csrf_token()
    return session_user()  # type: ignore[return-value]


def logout() -> None:
    session.clear()


def session_user() -> SessionUser | None:
    """The signed-in user of this session; None if none, disabled, or the password changed since."""
    username = session.get("user")
    if not username:
        return None
    row = _user_row(username)
    if row is None or not row.active or row.token_version != session.get("tv"):
        return None
    depts = current().departments
    dept = depts.get(row.department_id) if row.department_id else None
    return SessionUser(Actor(row.username, row.role, row.department_id), row.display_name or row.username,
                       dept["name"] if dept else None)


def wall_allowed() -> bool:
    """May this request see the wall? (`wall_access`: open | token | login)."""
    cfg = current().config
    mode = cfg.wall_access
    if mode == "open" or session_user() is not None:
        return True
    if mode == "token":
        if session.get("wall_ok"):
            return True
        sent = request.args.get("token", "")
        if cfg.screen_token and sent and hmac.compare_digest(sent, cfg.screen_token):
            session["wall_ok"] = True
            return True
        return False
    return session_user() is not None  # login (and any unknown mode: the strictest)


def socket_identity(auth: dict | None) -> dict | None:
    """Who a Socket.IO connection is (rooms are chosen from it); None refuses the connection."""
    kind = (auth or {}).get("kind")
    if kind == "console":
        user = session_user()
        if user is None:
            return None
        dept = user.actor.department_id if user.is_department else None
        return {"kind": "console", "user": user.actor.username, "department_id": dept}
    cfg = current().config
    if cfg.wall_access == "token":
        sent = str((auth or {}).get("token") or "")
        if not session.get("wall_ok") and not (cfg.screen_token and sent and
                                               hmac.compare_digest(sent, cfg.screen_token)):
            return None
    elif not wall_allowed():
        return None
    return {"kind": "wall", "department_id": None}


def viewing_token() -> str:
    """The token a screen shows to the streams service (观看令牌): none on the open wall; the screen
    token on a token wall; else a login token of the signed-in user (the streams verifier accepts both)."""
    from backend.services import auth

    cfg = current().config
    user = session_user()
    if user is not None and (cfg.wall_access != "open" or not cfg.demo):
        return auth.token_for_user(user.actor.username)
    if cfg.wall_access in ("open", "token") and cfg.screen_token:
        return cfg.screen_token  # an open wall shows what the screen token opens anyway
    return ""


def video_settings() -> dict:
    """Where the screen's browser finds the streams service and which token it sends (same host)."""
    cfg = current().config
    return {"port": cfg.streams_port, "token": viewing_token()}


def _safe_next(target: str | None) -> str:
    if not target:
        return "/console/"
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/console/"
    return target


WALL_PAGES = ("/", "/_dash-layout")
BIG_BODIES = ("/console/_dash-update-component", "/console/api/photos")
BIG_BODY = 8 * 1024 * 1024
CONSOLE_PUBLIC = ("/console/login",)


def install(app: Flask) -> None:
    """Session settings, the access checks and the CSRF check of every state-changing request."""
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_NAME="citywall_session")

    @app.before_request
    def _guard():
        path = request.path
        if path.startswith("/api/") or path.startswith("/socket.io"):
            return None  # bearer tokens; Socket.IO checks at connect
        if path in BIG_BODIES and session.get("user"):
            request.max_content_length = BIG_BODY  # photos (base64 in a Dash callback, or multipart)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            if path in ("/console/login", "/console/logout"):
                if not csrf_ok(request.form.get("csrf")):
                    abort(400, "the form expired: reload the page")
            elif not csrf_ok(request.headers.get(CSRF_HEADER)):
                return jsonify({"error": {"code": "csrf", "message": "missing or wrong CSRF token",
                                          "details": {}}}), 403
        if path.startswith("/console"):
            if path in CONSOLE_PUBLIC or "/_dash-component-suites/" in path or "/assets/" in path:
                return None
            if session_user() is None:
                if path in ("/console", "/console/"):
                    return redirect("/console/login?next=" + path)
                return jsonify({"error": {"code": "unauthorized", "message": "sign in to the console",
                                          "details": {}}}), 401
            return None
        if path in WALL_PAGES or path.startswith("/wall/api/"):
            if not wall_allowed():
                if path == "/" and current().config.wall_access == "login":
                    return redirect("/console/login?next=/")
                return jsonify({"error": {"code": "unauthorized", "message": "this wall needs a screen token "
                                          "or a login", "details": {}}}), 401
        return None

    @app.after_request
    def _cookie(resp):
        tok = session.get("csrf")
        if tok and request.cookies.get(CSRF_COOKIE) != tok:
            resp.set_cookie(CSRF_COOKIE, tok, httponly=False, samesite="Strict", path="/")
        return resp
