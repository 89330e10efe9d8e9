"""What a pass reports: per message progress while sending, and the whole pass when it ends."""

from __future__ import annotations

from dataclasses import dataclass, field

from broadcast.dispatch.ledger import Outcomes


@dataclass
class Progress:
    message_id: int
    total: int
    outcomes: Outcomes
    elapsed_s: float


@dataclass
class RunReport:
    started: list[int] = field(default_factory=list)  # messages frozen by this run
    optout_skipped: dict[int, int] = field(default_factory=dict)  # started message -> opted-out people left out
    completed: list[int] = field(default_factory=list)  # messages now fully sent
    paused: dict[int, str] = field(default_factory=dict)
    expired: dict[int, str] = field(default_factory=dict)
    held: dict[int, str] = field(default_factory=dict)  # message -> why it was held (over a budget) instead of sent
    waiting_quiet: list[int] = field(default_factory=list)
    in_doubt: dict[int, int] = field(default_factory=dict)  # message -> deliveries held in doubt
    failovers: list[dict[str, str]] = field(default_factory=list)
    channels: dict[int, dict[str, int]] = field(default_factory=dict)  # started message -> deliveries per channel
    in_doubt_by_channel: dict[int, dict[str, int]] = field(default_factory=dict)  # message -> channel -> in doubt
    fell_back: int = 0  # deliveries moved to SMS after their channel refused or failed (--fallback sms)
    outcomes: Outcomes = field(default_factory=Outcomes)
    recovered: Outcomes = field(default_factory=Outcomes)
    receipts: int = 0
    elapsed_s: float = 0.0

    @property
    def needs_attention(self) -> bool:
        return bool(self.paused or self.in_doubt or self.held)

    def to_dict(self) -> dict[str, object]:
        return {
            "started": self.started, "completed": self.completed,
            "optout_skipped": [{"id": k, "people": v} for k, v in self.optout_skipped.items()],
            "paused": [{"id": k, "reason": v} for k, v in self.paused.items()],
            "expired": [{"id": k, "reason": v} for k, v in self.expired.items()],
            "held": [{"id": k, "reason": v} for k, v in self.held.items()],
            "waiting_quiet_hours": self.waiting_quiet,
            "in_doubt": [{"id": k, "deliveries": v} for k, v in self.in_doubt.items()],
            "failovers": self.failovers,
            "channels": [{"id": k, "deliveries": v} for k, v in self.channels.items()],
            "in_doubt_by_channel": [{"id": k, "channels": v} for k, v in self.in_doubt_by_channel.items()],
            "fell_back_to_sms": self.fell_back,
            "accepted": self.outcomes.accepted, "failed": self.outcomes.failed, "retrying": self.outcomes.retry,
            "expired_deliveries": self.outcomes.expired, "in_doubt_new": self.outcomes.in_doubt,
            "recovered": vars(self.recovered), "receipts": self.receipts, "elapsed_s": round(self.elapsed_s, 3),
        }
