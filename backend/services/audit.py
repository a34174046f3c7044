"""Verifying the hash chain of the event rows (审计链校验), streamed in id order."""
from __future__ import annotations

from sqlalchemy import select

from backend.domain.audit import GENESIS, ChainResult, verify_chain
from backend.services.context import current
from backend.store import models as m

EVENTS = m.Event.__table__
HEAD = m.AuditHead.__table__


def verify() -> ChainResult:
    ctx = current()
    cols = [EVENTS.c.id, EVENTS.c.case_id, EVENTS.c.type, EVENTS.c.action, EVENTS.c.actor, EVENTS.c.role,
            EVENTS.c.from_status, EVENTS.c.to_status, EVENTS.c.payload, EVENTS.c.created_at,
            EVENTS.c.prev_hash, EVENTS.c.hash]
    with ctx.reader.connect() as conn:
        head = conn.execute(select(HEAD.c.last_event_id, HEAD.c.last_hash).where(HEAD.c.id == 1)).first()
        head_id, head_hash = (head.last_event_id, head.last_hash) if head else (0, GENESIS)
        rows = conn.execution_options(yield_per=5000).execute(
            select(*cols).where(EVENTS.c.id <= head_id).order_by(EVENTS.c.id))
        return verify_chain(rows, head_id, head_hash)
