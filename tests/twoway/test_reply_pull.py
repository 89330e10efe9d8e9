"""Replies pulled from a gateway with a pull API go through intake like pushed ones: stored once
(a second pull, overlapping the first, adds nothing), and the pull starts after the last reply."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import sqlalchemy as sa

from broadcast.gateways.base import Capabilities, Inbound
from broadcast.twoway.pull import pull_replies
from tests.helpers.scripted import Scripted

T = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)


class Pulling(Scripted):
    capabilities: ClassVar[Capabilities] = Capabilities(name="pulling", max_batch=10)
    asked: ClassVar[list[datetime]] = []
    replies: ClassVar[Sequence[Inbound]] = ()

    async def fetch_inbound(self, since: datetime) -> list[Inbound]:
        type(self).asked.append(since)
        return [r for r in self.replies if r.at >= since]


def test_pulled_replies_are_taken_in_once_and_the_next_pull_starts_after_the_last(setup, monkeypatch) -> None:
    from broadcast.gateways import registry

    monkeypatch.setitem(registry.BUILTINS, "pulling", f"{__name__}:Pulling")
    Pulling.asked = []
    Pulling.replies = [Inbound("pulling", f"r{i}", "13800000001", "1069", text, T + timedelta(minutes=i), b"")
                       for i, text in enumerate(["路灯不亮", "TD"])]
    first = pull_replies(setup, gateways=["pulling"])
    again = pull_replies(setup, gateways=["pulling"])
    assert (first.taken.new, first.taken.optouts, first.taken.feedback) == (2, 1, 1)
    assert again.taken.new == 0 and again.taken.duplicates == 2
    now = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # BROADCAST_NOW of setup
    assert Pulling.asked[0] == now - timedelta(days=7)
    assert Pulling.asked[1] == T + timedelta(minutes=1) - timedelta(hours=1)
    with setup.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from inbound where gateway = 'pulling'")).scalar() == 2


def test_a_gateway_without_a_pull_api_is_skipped_with_a_note(setup) -> None:
    out = pull_replies(setup, gateways=["simulator"])
    assert out.gateways[0].note == "skipped: replies are pushed (no pull API)"


def test_inbox_pull_on_the_command_line(setup, cli, monkeypatch) -> None:
    from broadcast.gateways import registry

    monkeypatch.setitem(registry.BUILTINS, "pulling", f"{__name__}:Pulling")
    Pulling.replies = [Inbound("pulling", "q1", "13800000002", "1069", "退订", T, b"")]
    result = cli("inbox", "pull", "-g", "pulling", "-g", "simulator")
    assert result.exit_code == 0, result
    assert "pulling: 1 pulled, 1 new" in result.stdout and "simulator: skipped" in result.stdout
    assert "opted out 1" in result.stdout
    again = cli("inbox", "pull", "-g", "pulling", "--json")
    assert again.json()["new"] == 0 and again.json()["duplicates"] == 1
