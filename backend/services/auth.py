"""Users, passwords and bearer tokens (认证).

Passwords are hashed with Argon2id (argon2-cffi; OWASP's minimum parameters). Tokens are signed
and time-limited (itsdangerous); a token names the user and its token version, so changing a
password or disabling a user invalidates every token issued before.
"""
from __future__ import annotations

import secrets
import threading
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import insert, select, update

from backend.domain import lifecycle
from backend.domain.lifecycle import Actor
from backend.services import errors
from backend.services.context import Context, current
from backend.store import models as m

TOKEN_SALT = "citywall-auth"
TOKEN_MAX_AGE = 12 * 3600
USERS = m.User.__table__
SETTINGS = m.Setting.__table__

_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_secret_lock = threading.Lock()
_secrets: dict[str, str] = {}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def secret_key(ctx: Context | None = None) -> str:
    """CITYWALL_SECRET_KEY, or a random key generated once and kept in the database (shared by processes)."""
    ctx = ctx or current()
    if ctx.config.secret_key:
        return ctx.config.secret_key
    url = ctx.config.effective_database_url
    with _secret_lock:
        if url in _secrets:
            return _secrets[url]
        with ctx.engine.begin() as conn:
            row = conn.execute(select(SETTINGS.c.value).where(SETTINGS.c.key == "secret_key")).first()
            if row is None:
                value = secrets.token_urlsafe(48)
                conn.execute(insert(SETTINGS).values(key="secret_key", value=value))
            else:
                value = row.value
        _secrets[url] = value
        return value


def _serializer(ctx: Context | None = None) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key(ctx), salt=TOKEN_SALT)


def create_user(username: str, password: str, role: str, department_id: int | None = None,
                display_name: str = "") -> int:
    _user_cache.clear()
    if role not in lifecycle.ROLES or role in ("system",):
        raise errors.BadInput(f"unknown role {role!r}", {"allowed": [r for r in lifecycle.ROLES if r != "system"]})
    if role == "department" and department_id is None:
        raise errors.BadInput("a department user needs a department_id")
    ctx = current()
    with ctx.engine.begin() as conn:
        existing = conn.execute(select(USERS.c.id).where(USERS.c.username == username)).first()
        values = dict(password_hash=hash_password(password), role=role, department_id=department_id,
                      display_name=display_name or username, active=True)
        if existing:
            conn.execute(update(USERS).where(USERS.c.id == existing.id)
                         .values(token_version=USERS.c.token_version + 1, **values))
            return existing.id
        return conn.execute(insert(USERS).values(username=username, token_version=1, **values)
                            .returning(USERS.c.id)).scalar_one()


def set_password(username: str, password: str) -> None:
    _user_cache.clear()
    ctx = current()
    with ctx.engine.begin() as conn:
        n = conn.execute(update(USERS).where(USERS.c.username == username).values(
            password_hash=hash_password(password), token_version=USERS.c.token_version + 1)).rowcount
    _user_cache.clear()
    if not n:
        raise errors.NotFound(f"no user {username!r}")


class LoginLimiter:
    """At most `attempts` failed logins per key per window; then 429 until the window passes."""

    def __init__(self, attempts: int = 10, window: float = 60.0):
        self.attempts, self.window = attempts, window
        self._fails: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._fails.get(key, []) if now - t < self.window]
            self._fails[key] = recent
            if len(recent) >= self.attempts:
                raise errors.TooMany("too many failed logins; wait a minute", {"retry_after": int(self.window)})

    def failed(self, key: str) -> None:
        with self._lock:
            self._fails.setdefault(key, []).append(time.monotonic())


limiter = LoginLimiter()


def issue_token(username: str, password: str, client: str = "") -> dict:
    """Username and password → bearer token. Wrong credentials: 401; too many tries: 429."""
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise errors.BadInput("'username' and 'password' are required strings")
    key = f"{client}|{username}"
    limiter.check(key)
    ctx = current()
    with ctx.reader.connect() as conn:
        user = conn.execute(select(USERS).where(USERS.c.username == username)).first()
    if user is None or not user.active or not check_password(user.password_hash, password):
        limiter.failed(key)
        raise errors.Unauthorized("wrong username or password", code="bad_credentials")
    token = _serializer(ctx).dumps({"u": user.username, "v": user.token_version})
    return {"token": token, "token_type": "Bearer", "expires_in": TOKEN_MAX_AGE, "user": _user_dict(ctx, user)}


def token_for_user(username: str) -> str:
    """A bearer token for a user already signed in some other way (the console's session), e.g. to watch video."""
    ctx = current()
    user = _cached_user(ctx, username)
    if user is None or not user.active:
        raise errors.Unauthorized("no such active user", code="bad_credentials")
    return _serializer(ctx).dumps({"u": user.username, "v": user.token_version})


def _user_dict(ctx: Context, user) -> dict:
    dept = ctx.departments.get(user.department_id) if user.department_id else None
    return {"username": user.username, "role": user.role, "role_zh": lifecycle.ROLES.get(user.role, user.role),
            "department_id": user.department_id, "department_name": dept["name"] if dept else None,
            "display_name": user.display_name}


USER_CACHE_SECONDS = 2.0
_user_cache: dict[tuple[str, str], tuple[float, object]] = {}


def _cached_user(ctx: Context, username: str):
    """The user row, cached for a moment: a revocation made in another process counts within 2 s."""
    key = (ctx.config.effective_database_url, username)
    hit = _user_cache.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < USER_CACHE_SECONDS:
        return hit[1]
    with ctx.reader.connect() as conn:
        user = conn.execute(select(USERS).where(USERS.c.username == username)).first()
    _user_cache[key] = (now, user)
    return user


VERIFIED_CACHE_SECONDS = 60.0
VERIFIED_CACHE_SIZE = 10_000
_verified: dict[tuple[str, str], tuple[float, dict]] = {}


def _verified_token(ctx: Context, token: str) -> dict:
    """The signed content of a token, its signature checked once a minute at most (a client sends the
    same token with every request; checking the HMAC each time was a fifth of an API call's cost).
    Expiry still counts to the second; revocation is checked on every call, against the user row."""
    key = (secret_key(ctx), token)
    now = time.time()
    hit = _verified.get(key)
    if hit is not None and now < hit[0]:
        return hit[1]
    try:
        data, signed_at = _serializer(ctx).loads(token, max_age=TOKEN_MAX_AGE, return_timestamp=True)
    except SignatureExpired as exc:
        raise errors.Unauthorized("the token has expired; sign in again", code="token_expired") from exc
    except BadSignature as exc:
        raise errors.Unauthorized("the token is not valid", code="bad_token") from exc
    if not isinstance(data, dict) or "u" not in data:
        raise errors.Unauthorized("the token is not valid", code="bad_token")
    if len(_verified) >= VERIFIED_CACHE_SIZE:
        _verified.clear()
    _verified[key] = (min(now + VERIFIED_CACHE_SECONDS, signed_at.timestamp() + TOKEN_MAX_AGE), data)
    return data


def actor_for_token(token: str) -> tuple[Actor, dict]:
    """A bearer token → the acting user. Forged, stale or revoked tokens: 401."""
    ctx = current()
    data = _verified_token(ctx, token)
    user = _cached_user(ctx, data["u"])
    if user is None or not user.active or user.token_version != data.get("v"):
        raise errors.Unauthorized("the token was revoked; sign in again", code="token_revoked")
    return Actor(user.username, user.role, user.department_id), _user_dict(ctx, user)
