"""Who may watch (观看鉴权): a pluggable token verifier.

The default accepts the configured screen token (大屏令牌) and login tokens signed like the backend's
(`itsdangerous.URLSafeTimedSerializer(secret, salt="citywall-auth")`); in demo mode the wall is open.
"""
from __future__ import annotations

import hmac
from typing import Protocol

from itsdangerous import BadSignature, URLSafeTimedSerializer

AUTH_SALT = "citywall-auth"


class TokenVerifier(Protocol):
    def __call__(self, token: str | None) -> bool:
        """True when `token` (None if the request carried none) may view cameras."""
        ...


class DefaultVerifier:
    """Screen token, signed login tokens, or open in demo mode."""

    def __init__(self, secret_key: str = "", screen_token: str = "", demo: bool = False,
                 max_age: int = 7 * 24 * 3600) -> None:
        self.demo = demo
        self.screen_token = screen_token
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(secret_key, salt=AUTH_SALT) if secret_key else None

    def __call__(self, token: str | None) -> bool:
        if self.demo:
            return True
        if not token:
            return False
        if self.screen_token and hmac.compare_digest(token.encode(), self.screen_token.encode()):
            return True
        if self._serializer is None:
            return False
        try:
            self._serializer.loads(token, max_age=self.max_age)
        except BadSignature:  # also SignatureExpired
            return False
        return True


def token_from(headers, query) -> str | None:
    """The bearer token of a request: `Authorization: Bearer <token>` or `?token=`."""
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return query.get("token") or None
