"""The demo: the main job on embedded defaults, in a fresh database of its own.

The committee and its 65 branches are created, the sample contact lists are imported (the clean
.xlsx, then a GB18030 CSV full of real-world mistakes, whose rejected rows are written back for
the branch manager), today's 精神早餐 is created by the office and approved by a second person,
sent on WeCom (政务微信) to the members of the branches that use it, through the real ``wecom-app``
gateway and a local stand-in for WeCom's API (``gateways.wecom_standin``), and by SMS to everyone
else through the simulator (which answers like a real gateway: latency, a few dead numbers,
delivery receipts a moment later); the three WeCom users who left get it by SMS instead
(``--fallback sms``). The delivery counts are returned, per channel. Then a few members reply
(in the simulator's push format, through the same intake as a real provider's replies): one sends
TD and is opted out, a branch's submitter hands in tomorrow's line, two write in with feedback.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broadcast.config import environment
from broadcast.errors import ConfigError
from broadcast.recipients.groups import GroupInfo
from broadcast.recipients.importer import ImportSummary


def samples_dir() -> Path:
    """The repository's ``recipients/`` folder with the sample contact lists."""
    here = Path(__file__).resolve().parent.parent / "recipients"
    if (here / "members.xlsx").is_file():
        return here
    raise ConfigError(
        "the sample contact lists (recipients/members.xlsx) were not found",
        hint="run the demo from a checkout of the broadcast repository",
    )


@dataclass
class DemoResult:
    database: Path
    groups: list[GroupInfo] = field(default_factory=list)
    imports: list[ImportSummary] = field(default_factory=list)
    errors_file: Path | None = None
    message_id: int | None = None
    text: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    receipts: int = 0
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)  # channel -> status -> deliveries
    fell_back: int = 0  # WeCom refused them (they left): sent by SMS instead
    replies: dict[str, int] = field(default_factory=dict)  # what came back: optouts, feedback, submissions


def run_demo(data_dir: Path, say: Callable[[str], None] = lambda _m: None,
             progress: Callable[[Any], None] | None = None) -> DemoResult:
    from broadcast.config import load_settings
    from broadcast.recipients.groups import add_group, list_groups
    from broadcast.recipients.importer import ImportOptions, import_members
    from broadcast.workspace import Workspace

    samples = samples_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    db = data_dir / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    templates = samples.parent / "templates"
    office = load_settings(database_url=f"sqlite:///{db}", operator="办公室", gateway="simulator",
                           signature="【城南新区】", templates_dir=templates, quiet_hours="", rate=200)
    ws = Workspace.open(office)
    result = DemoResult(database=db)
    try:
        with (samples / "organisations.csv").open(encoding="utf-8") as fh:
            orgs = list(csv.DictReader(fh))
        for row in orgs:  # parents come first in the file
            add_group(ws, row["名称"], row["上级"] or None)
        say(f"Created {len(orgs)} groups from organisations.csv (the committee and its branches)")
        clean = import_members(ws, samples / "members.xlsx", ImportOptions(group_column="所属支部"))
        result.imports.append(clean)
        say(f"Imported members.xlsx: {clean.added} members added, {clean.duplicates} listed in two branches")
        result.errors_file = data_dir / "demo-rejected-rows.csv"
        messy = import_members(
            ws, samples / "members-messy-gb18030.csv",
            ImportOptions(group_column="所属支部", errors_out=result.errors_file),
        )
        result.imports.append(messy)
        say(
            f"Imported members-messy-gb18030.csv (GB18030, mangled numbers): {messy.added} added, "
            f"{messy.updated} updated, {messy.unchanged} unchanged, {messy.rejected} rejected, "
            f"{messy.conflicts} conflicts"
        )
        result.groups = list_groups(ws)
        _send_breakfast(ws, result, say, progress)
        _replies(ws, result, say)
    finally:
        ws.close()
    return result


def _send_breakfast(ws: Any, result: DemoResult, say: Callable[[str], None],
                    progress: Callable[[Any], None] | None) -> None:
    """Today's 精神早餐: written by the office, approved by a second person, sent, counted."""
    from broadcast import clock
    from broadcast.dispatch.service import delivery_overview, send_now, summary_counts
    from broadcast.gateways.wecom_standin import WeComStandIn
    from broadcast.messages.actions import approve_message
    from broadcast.messages.store import create_message
    from broadcast.messages.templates import load_series
    from broadcast.workspace import Workspace

    series = load_series(ws.settings.templates_dir, "精神早餐")
    today = clock.local(clock.now(ws.settings), ws.settings.timezone).date()
    line = series.lines[today.toordinal() % len(series.lines)]
    on_wecom, left = _wecom_users(ws, result.database.parent)
    say("Imported the WeCom directory (demo-wecom-directory.csv, 企业微信 column) over the member list")
    created = create_message(ws, text=line, all_=True, channels="wecom-app,sms", fallback="sms")
    leader = Workspace(ws.settings.model_copy(update={"operator": "分管领导"}), ws.engine)
    approve_message(leader, created.id)
    say(f"Message {created.id} written by 办公室, approved by 分管领导 (two-person rule): {created.check.text}")
    say(f"Channels: WeCom (政务微信) for the {len(on_wecom)} members whose branches use it, SMS for the rest; "
        f"{len(left)} of them have left WeCom (--fallback sms)")
    with WeComStandIn(_CORP, _CORP_SECRET, _AGENT, on_wecom - left) as standin, environment(_wecom_env(standin.url)):
        report = send_now(leader, created.id, progress=progress, receipt_wait_s=3.0)
    result.message_id, result.text = created.id, created.check.text
    result.counts = summary_counts(ws, created.id)
    result.receipts, result.fell_back = report.receipts, report.fell_back
    result.by_channel = delivery_overview(ws, created.id)["by_channel"]  # type: ignore[assignment]


_CORP, _CORP_SECRET, _AGENT = "ww-demo-chengnan", "demo-corp-secret", 1000002
_WECOM_BRANCHES = 20  # the first branches of organisations.csv use WeCom (政务微信)


def _wecom_users(ws: Any, folder: Path) -> tuple[set[str], set[str]]:
    """The members of the first branches get their WeCom userid the way an office would: the
    WeCom directory's export (姓名, 手机, 所属支部, 企业微信), imported over the member list (a
    re-import sets the new column and changes nothing else). Returns (their userids, three who left)."""
    import sqlalchemy as sa

    from broadcast.recipients.importer import ImportOptions, import_members

    with ws.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT m.id, m.name, m.phone, g.name FROM members m JOIN memberships ms ON ms.member_id = m.id "
            "JOIN groups g ON g.id = ms.group_id WHERE g.id IN (SELECT id FROM groups WHERE parent_id IS NOT NULL "
            "ORDER BY id LIMIT :n) ORDER BY m.id"), {"n": _WECOM_BRANCHES}).all()
    directory = folder / "demo-wecom-directory.csv"
    with directory.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["姓名", "手机", "所属支部", "企业微信"])
        for mid, name, phone, group in rows:
            w.writerow([name, phone, group, f"cn{mid}"])
    import_members(ws, directory, ImportOptions(group_column="所属支部"))
    users = {f"cn{mid}" for mid, *_ in rows}
    return users, set(sorted(users)[:3])


def _wecom_env(url: str) -> dict[str, str]:
    return {"BROADCAST_WECOM_APP_CORP_ID": _CORP, "BROADCAST_WECOM_APP_CORP_SECRET": _CORP_SECRET,
            "BROADCAST_WECOM_APP_AGENT_ID": str(_AGENT), "BROADCAST_WECOM_APP_ENDPOINT": url}


_REPLIES = ("TD", "投稿：学思践悟，知行合一，把初心落在行动上。", "小区东门的路灯坏了一周了，晚上很不安全。",
            "建议早餐内容多结合社区实际工作。")


def _replies(ws: Any, result: DemoResult, say: Callable[[str], None]) -> None:
    """Replies to the morning's message from four of the people it reached (the second one marked
    as their branch's submitter first), taken in as a provider's push would be."""
    import sqlalchemy as sa

    from broadcast import clock
    from broadcast.gateways.base import Inbound
    from broadcast.twoway import intake

    with ws.engine.begin() as conn:
        reached = list(conn.execute(sa.text(
            "SELECT phone, member_id FROM deliveries WHERE message_id = :m AND status IN ('delivered', 'accepted') "
            "AND member_id IS NOT NULL ORDER BY id LIMIT :n"), {"m": result.message_id, "n": len(_REPLIES)}))
        if len(reached) < len(_REPLIES):
            return
        conn.execute(sa.text("UPDATE memberships SET submitter = true WHERE id = (SELECT min(id) FROM memberships "
                             "WHERE member_id = :mid)"), {"mid": reached[1].member_id})
    now = clock.now(ws.settings)
    items = [Inbound("simulator", f"demo-{result.message_id}-{i}", r.phone, "10690", text, now, text.encode())
             for i, (r, text) in enumerate(zip(reached, _REPLIES, strict=True))]
    taken = intake.record(ws.engine, items, now, intake.Rules.of(ws.settings))
    result.replies = {"optouts": taken.optouts, "feedback": taken.feedback, "submissions": taken.submissions}
    say(f"Replies: {taken.new} came back: {taken.optouts} opted out (TD), {taken.submissions} line handed in "
        f"by a branch (broadcast submission list), {taken.feedback} in the inbox (broadcast inbox list)")
