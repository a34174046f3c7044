"""Invitation tokens (会商邀请令牌) and the join rate limit.

The backend signs `{"room", "pid", "name", "leader"}` with
`URLSafeTimedSerializer(secret, salt="citywall-conference")`; tokens live 7 days.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

CONFERENCE_SALT = "citywall-conference"
MAX_AGE = 7 * 24 * 3600


class InvitationError(Exception):
    """A missing, forged, expired or malformed invitation token (HTTP 401)."""


@dataclass(frozen=True)
class Invitation:
    room: str
    pid: str
    name: str
    leader: bool = False


class InvitationVerifier:
    """Checks invitation tokens signed with the backend's secret."""

    def __init__(self, secret_key: str, max_age: int = MAX_AGE) -> None:
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(secret_key, salt=CONFERENCE_SALT) if secret_key else None

    def load(self, token: str | None) -> Invitation:
        """The invitation in `token`; raises InvitationError with a clear message."""
        if not token:
            raise InvitationError("an invitation token is required")
        if self._serializer is None:
            raise InvitationError("this streams service has no secret key: invitations cannot be checked")
        try:
            data = self._serializer.loads(token, max_age=self.max_age)
        except SignatureExpired:
            raise InvitationError("the invitation has expired") from None
        except BadSignature:
            raise InvitationError("the invitation token is not valid") from None
        if not isinstance(data, dict):
            raise InvitationError("the invitation token has no room")
        room, pid, name = data.get("room"), data.get("pid"), data.get("name")
        if not isinstance(room, str) or not room or not isinstance(pid, str) or not pid:
            raise InvitationError("the invitation token lacks its room or participant id")
        if not isinstance(name, str) or not name.strip():
            name = pid
        return Invitation(room, pid, name.strip()[:40], data.get("leader") is True)


def make_token(secret_key: str, room: str, pid: str, name: str, leader: bool = False) -> str:
    """Sign an invitation exactly as the backend does (for tests and benchmarks)."""
    return URLSafeTimedSerializer(secret_key, salt=CONFERENCE_SALT).dumps(
        {"room": room, "pid": pid, "name": name, "leader": leader})


class RateLimiter:
    """At most `limit` events per `window` seconds per key (a sliding window)."""

    def __init__(self, limit: int = 10, window: float = 60.0, clock=time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"rate limit must be at least 1 per positive window, got {limit}/{window}")
        self.limit, self.window, self._clock = limit, window, clock
        self._hits: dict[tuple, collections.deque[float]] = {}

    def allow(self, key: tuple) -> bool:
        """Record one attempt for `key`; False when the key has used up its window."""
        now = self._clock()
        hits = self._hits.setdefault(key, collections.deque())
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        if len(self._hits) > 10_000:  # forget idle keys
            for k in [k for k, v in self._hits.items() if not v or now - v[-1] >= self.window]:
                del self._hits[k]
        return True
