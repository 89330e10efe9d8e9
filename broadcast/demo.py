"""The demo: the main job on embedded defaults, in a fresh database of its own.

At this stage: the committee and its 65 branches are created, the sample contact lists are
imported (the clean .xlsx, then a GB18030 CSV full of real-world mistakes), and the groups are
shown. Later stages add: queue today's 精神早餐 → send through the simulator → report.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


def run_demo(data_dir: Path, say: Callable[[str], None] = lambda _m: None) -> DemoResult:
    from broadcast.config import load_settings
    from broadcast.recipients.groups import add_group, list_groups
    from broadcast.recipients.importer import ImportOptions, import_members
    from broadcast.workspace import Workspace

    samples = samples_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    db = data_dir / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    ws = Workspace.open(load_settings(database_url=f"sqlite:///{db}"))
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
    finally:
        ws.close()
    return result
