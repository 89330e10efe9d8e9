"""``broadcast receipts status``: how many deliveries await a final receipt, per gateway, and for how long."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from broadcast import clock
from broadcast.db.dispatch_models import ACCEPTED, Delivery, ReceiptLog
from broadcast.db.types import table
from broadcast.workspace import Workspace

deliveries_t = table(Delivery)
receipts_t = table(ReceiptLog)


@dataclass
class GatewayWait:
    gateway: str
    awaiting: int  # accepted, no final receipt yet
    oldest: datetime | None
    unconfirmed: int  # of those, past BROADCAST_RECEIPT_TIMEOUT
    receipts_pending: int  # received but not yet applied

    def to_dict(self) -> dict[str, object]:
        return {"gateway": self.gateway, "awaiting": self.awaiting,
                "oldest": self.oldest.isoformat() if self.oldest else None,
                "unconfirmed": self.unconfirmed, "receipts_pending": self.receipts_pending}


def status(ws: Workspace) -> list[GatewayWait]:
    d, r = deliveries_t, receipts_t
    cutoff = clock.now(ws.settings) - ws.settings.receipt_wait
    with ws.engine.connect() as conn:
        waits = conn.execute(
            sa.select(d.c.gateway, sa.func.count(), sa.func.min(d.c.sent_at),
                      sa.func.sum(sa.case((d.c.sent_at < cutoff, 1), else_=0)))
            .where(d.c.status == ACCEPTED, d.c.kind == "real").group_by(d.c.gateway).order_by(d.c.gateway)
        ).all()
        pending: dict[str, int] = dict(conn.execute(
            sa.select(r.c.gateway, sa.func.count()).where(r.c.applied == 0).group_by(r.c.gateway)).all())
    out = [GatewayWait(gw, int(n), oldest, int(old or 0), int(pending.pop(gw, 0))) for gw, n, oldest, old in waits]
    out += [GatewayWait(gw, 0, None, 0, int(n)) for gw, n in sorted(pending.items())]
    return out
