"""The hash chain of the event rows (审计链), pure: canonical form, hashing, verification.

Each row's hash covers its own fields and the previous row's hash, so editing a row breaks its
own hash and deleting one breaks the link of the next (or the stored head, for the last row).
电子监察 (electronic supervision) builds on this chain.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

GENESIS = "0" * 64


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(event_id: int, case_id: int | None, type_: str, action: str, actor: str, role: str,
              from_status: str | None, to_status: str | None, payload: str, created_at: datetime) -> bytes:
    """The bytes that are hashed for one row: every field, in a fixed order, as compact JSON."""
    return json.dumps(
        [event_id, case_id, type_, action, actor, role, from_status, to_status, payload, _iso(created_at)],
        ensure_ascii=False, separators=(",", ":")).encode()


def chain_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


@dataclass(frozen=True)
class ChainResult:
    ok: bool
    checked: int
    broken_event_id: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checked": self.checked, "broken_event_id": self.broken_event_id,
                "reason": self.reason}


def verify_chain(rows: Iterable, head_event_id: int, head_hash: str) -> ChainResult:
    """Check rows (in id order, each with the fields of `canonical` plus prev_hash and hash).

    Returns the first broken row: an edited row (its hash does not match its content), a deleted
    row (the next row's prev_hash does not match), or a removed tail (the head does not match).
    """
    prev = GENESIS
    checked = 0
    last_id = 0
    for r in rows:
        if r.prev_hash != prev:
            return ChainResult(False, checked, r.id, "the previous row was deleted or changed (link broken)")
        body = canonical(r.id, r.case_id, r.type, r.action, r.actor, r.role, r.from_status, r.to_status,
                         r.payload, r.created_at)
        if chain_hash(prev, body) != r.hash:
            return ChainResult(False, checked, r.id, "the row was edited (hash does not match its content)")
        prev = r.hash
        last_id = r.id
        checked += 1
    if last_id != head_event_id or prev != head_hash:
        return ChainResult(False, checked, last_id or None,
                           "rows after this one were deleted (the chain head does not match)")
    return ChainResult(True, checked)
