"""The demo: the main job on embedded defaults, in a fresh database of its own.

The committee and its 65 branches are created, the sample contact lists are imported (the clean
.xlsx, then a GB18030 CSV full of real-world mistakes, whose rejected rows are written back for
the branch manager), today's 精神早餐 is created by the office and approved by a second person,
sent through the simulator (which answers like a real gateway: latency, a few dead numbers,
delivery receipts a moment later), and the delivery counts are returned.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    finally:
        ws.close()
    return result


def _send_breakfast(ws: Any, result: DemoResult, say: Callable[[str], None],
                    progress: Callable[[Any], None] | None) -> None:
    """Today's 精神早餐: written by the office, approved by a second person, sent, counted."""
    from broadcast import clock
    from broadcast.dispatch.service import send_now, summary_counts
    from broadcast.messages.actions import approve_message
    from broadcast.messages.store import create_message
    from broadcast.messages.templates import load_series
    from broadcast.workspace import Workspace

    series = load_series(ws.settings.templates_dir, "精神早餐")
    today = clock.local(clock.now(ws.settings), ws.settings.timezone).date()
    line = series.lines[today.toordinal() % len(series.lines)]
    created = create_message(ws, text=line, all_=True)
    leader = Workspace(ws.settings.model_copy(update={"operator": "分管领导"}), ws.engine)
    approve_message(leader, created.id)
    say(f"Message {created.id} written by 办公室, approved by 分管领导 (two-person rule): {created.check.text}")
    report = send_now(leader, created.id, progress=progress, receipt_wait_s=3.0)
    result.message_id, result.text = created.id, created.check.text
    result.counts = summary_counts(ws, created.id)
    result.receipts = report.receipts
