"""A real `broadcast member import` process killed with SIGKILL part-way leaves the database
exactly as it was, and the same import then runs to completion."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers.files import write_csv


def _counts(db: Path) -> dict[str, int]:
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        out = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
               for t in ("members", "memberships", "groups")}
    engine.dispose()
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to see how far the import got")
@pytest.mark.parametrize("cpu_s", [0.9, 2.0, 3.5])  # start-up takes ~0.5 s of CPU; the import ~8 s more
def test_sigkill_during_import_changes_nothing(ws, tmp_path, cpu_s):
    from broadcast.recipients.groups import add_group
    from broadcast.recipients.members import add_member

    add_group(ws, "城南社区党支部")
    add_member(ws, "张三", "13805141234", ["城南社区党支部"])
    db = Path(ws.engine.url.database)
    before = _counts(db)
    rows = [[i, f"人{i}", f"13{i % 7 + 3}{i:08d}", f"支部{i % 65}", "党员", ""] for i in range(200_000)]
    big = write_csv(tmp_path / "big.csv", rows)
    proc = subprocess.Popen(
        [sys.executable, "-m", "broadcast", "member", "import", str(big), "--create-groups",
         "--errors-out", str(tmp_path / "rejects.csv")],
        env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    while proc.poll() is None and _cpu_seconds(proc.pid) < cpu_s:
        time.sleep(0.01)
    assert proc.poll() is None, "the import finished before it could be killed; make the file bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _counts(db) == before
    assert not (tmp_path / "rejects.csv").exists()
    r = subprocess.run([sys.executable, "-m", "broadcast", "member", "import", str(big), "--create-groups", "--json"],
                       env={**os.environ}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    after = _counts(db)
    assert after["members"] == before["members"] + 200_000
