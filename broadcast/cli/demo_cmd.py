"""``broadcast demo``: the main job on embedded defaults, in a database of its own."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where to put demo.db (default: the data directory)."),
) -> None:
    """Run the demo in a fresh demo database (never touches your real one)."""
    from broadcast.cli._output import say, table
    from broadcast.cli.send_cmd import _Reporter
    from broadcast.config import load_settings
    from broadcast.demo import run_demo

    target = data_dir or load_settings().data_dir
    rep = _Reporter(False)
    try:
        result = run_demo(target, say=say, progress=rep)
    finally:
        rep.close()
    branches = [g for g in result.groups if g.parent]
    table("Groups", ["Group", "Parent", "Members"],
          ([g.name, g.parent or "", g.members] for g in sorted(result.groups, key=lambda g: -g.members)[:15]),
          caption=f"largest 15 of {len(result.groups)} groups; {sum(g.members for g in branches)} memberships")
    messy = result.imports[-1]
    if messy.errors:
        table("Rows handed back to the branch manager", ["Row", "Value", "Problem"],
              ([e.row, e.value, e.reason] for e in messy.errors[:8]),
              caption=f"first 8 of {len(messy.errors)}; all in {result.errors_file}")
    c = result.counts
    total = sum(c.values())
    table(f"Message {result.message_id}: 精神早餐 to everyone, on WeCom and by SMS (the simulator)",
          ["people", "delivered", "accepted (no receipt yet)", "failed", "in doubt", "receipts"],
          [[total, c.get("delivered", 0), c.get("accepted", 0), c.get("failed", 0), c.get("in_doubt", 0),
            result.receipts]])
    if result.by_channel:
        table(f"Message {result.message_id} by channel", ["channel", "delivered", "accepted", "failed", "in doubt"],
              ([ch, n.get("delivered", 0), n.get("accepted", 0), n.get("failed", 0), n.get("in_doubt", 0)]
               for ch, n in sorted(result.by_channel.items())),
              caption=f"{result.fell_back} WeCom users who had left got it by SMS instead (--fallback sms)")
    say(f"Demo database: {result.database}")
    say(f"Explore it: BROADCAST_DATABASE_URL=sqlite:///{result.database} broadcast group show 城南新区党工委")
