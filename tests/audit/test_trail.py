"""The hash chain: intact after real use; every kind of tampering detected and named."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from broadcast.audit.trail import GENESIS, entries, export, note, verify, verify_file
from broadcast.db.engine import transaction

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL


@pytest.fixture
def chain(ws):
    with transaction(ws.engine, write=True) as conn:
        for i in range(1, 8):
            note(conn, "tester", "group.add", f"group:g{i}", parent=None, n=i)
    return ws


def sql(ws, statement: str, **params) -> None:
    with ws.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_intact_chain_verifies(chain):
    v = verify(chain.engine)
    assert v.ok and v.entries == 7 and v.head_hash
    first = next(entries(chain.engine))
    assert first.prev_hash == GENESIS and first.id == 1


def test_edited_details_are_named(chain):
    sql(chain, "UPDATE audit_log SET details = :d WHERE id = 4", d=json.dumps({"n": 99, "parent": None}))
    v = verify(chain.engine)
    assert not v.ok and v.entry_id == 4 and "edited" in v.problem


def test_edited_operator_is_named(chain):
    sql(chain, "UPDATE audit_log SET operator = 'someone else' WHERE id = 2")
    v = verify(chain.engine)
    assert not v.ok and v.entry_id == 2


def test_deleted_entry_is_named(chain):
    sql(chain, "DELETE FROM audit_log WHERE id = 3")
    v = verify(chain.engine)
    assert not v.ok and v.entry_id == 4 and "entry 3 is missing" in v.problem


def test_swapped_entries_are_detected(chain):
    with chain.engine.begin() as conn:
        a = conn.execute(sa.text("SELECT operator, action, object, details, prev_hash, hash, at FROM audit_log WHERE id=5")).one()
        b = conn.execute(sa.text("SELECT operator, action, object, details, prev_hash, hash, at FROM audit_log WHERE id=6")).one()
        for target, row in ((5, b), (6, a)):
            conn.execute(sa.text("UPDATE audit_log SET operator=:o, action=:a, object=:ob, details=:d, prev_hash=:p, "
                                 "hash=:h, at=:at WHERE id=:id"),
                         dict(o=row[0], a=row[1], ob=row[2], d=row[3], p=row[4], h=row[5], at=row[6], id=target))
    v = verify(chain.engine)
    assert not v.ok and v.entry_id == 5


def test_forged_row_appended_without_the_chain(chain):
    sql(chain, "INSERT INTO audit_log VALUES (8, '2026-11-27 00:00:00.000000', 'mallory', 'message.approve', "
               "'message:1', '{}', :p, :h)", p="0" * 64, h="f" * 64)
    v = verify(chain.engine)
    assert not v.ok and v.entry_id == 8


def test_forged_row_with_a_valid_hash_but_no_head_update(chain):
    """Even a forger who computes a correct hash is caught by the head record."""
    from broadcast.audit.trail import entry_hash
    from broadcast.db.types import utcnow

    head = list(entries(chain.engine))[-1].hash
    at = utcnow()
    h = entry_hash(8, at, "mallory", "message.approve", "message:1", "{}", head)
    with chain.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_log VALUES (8, :at, 'mallory', 'message.approve', 'message:1', '{}', :p, :h)"),
                     dict(at=at.replace(tzinfo=None).isoformat(sep=" "), p=head, h=h))
    v = verify(chain.engine)
    assert not v.ok and "head" in v.problem


def test_cut_off_tail_is_detected(chain):
    sql(chain, "DELETE FROM audit_log WHERE id = 7")
    v = verify(chain.engine)
    assert not v.ok and "removed from the end" in v.problem


def test_export_verifies_alone_and_detects_tampering(chain, tmp_path):
    path = tmp_path / "audit.jsonl"
    n, head = export(chain.engine, path)
    assert n == 7 and verify_file(path, head).ok
    lines = path.read_text(encoding="utf-8").splitlines()
    assert verify_file(path, "0" * 64).ok is False  # not the head the auditor kept
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    assert not verify_file(tmp_path / "cut.jsonl", head).ok
    edited = json.loads(lines[2])
    edited["details"]["n"] = 42
    lines[2] = json.dumps(edited, ensure_ascii=False)
    (tmp_path / "edit.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    v = verify_file(tmp_path / "edit.jsonl")
    assert not v.ok and v.entry_id == 3


def test_documented_procedure_with_only_the_standard_library(chain, tmp_path):
    """README 'Verifying an export': sha256 over canonical JSON, chained. Re-implemented here
    from the description alone, so the procedure is known to be complete."""
    import hashlib

    path = tmp_path / "a.jsonl"
    _, head = export(chain.engine, path)
    prev = "0" * 64
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        e = json.loads(line)
        body = {k: e[k] for k in ("id", "at", "operator", "action", "object", "details", "prev_hash")}
        digest = hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
                                .encode("utf-8")).hexdigest()
        assert e["id"] == i and e["prev_hash"] == prev and e["hash"] == digest
        prev = digest
    assert prev == head


def test_cli_verify_exit_codes(chain, cli):
    r = cli("audit", "verify", "--json")
    assert r.exit_code == 0 and r.json()["ok"] is True
    sql(chain, "DELETE FROM audit_log WHERE id = 2")
    r = cli("audit", "verify")
    assert r.exit_code == 1 and "entry 2 is missing" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("content, words", [
    (b"\xff\xfe not text\n", "line 1 is not UTF-8 text"),
    (b'{"id": 1}\n', "line 1 is missing field 'at'"),
    (b"id,at,operator\n", "line 1 is not an audit entry"),
])
def test_verify_file_on_a_file_that_is_not_an_export_is_one_line(cli, tmp_path, content, words):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(content)
    r = cli("audit", "verify", "--file", str(path))
    assert r.exit_code == 1 and words in r.stderr and "Traceback" not in r.stderr
