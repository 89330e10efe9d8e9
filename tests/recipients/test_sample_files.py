"""The sample lists in recipients/ (made by recipients/make_samples.py) import as their README
and members-messy.expected.json say: their invented numbers lie in allocated mobile ranges."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from broadcast.recipients.groups import add_group
from broadcast.recipients.importer import ImportOptions, import_members
from broadcast.recipients.phones import normalize_phone
from broadcast.workspace import Workspace

SAMPLES = Path(__file__).resolve().parents[2] / "recipients"


@pytest.fixture
def branches(ws: Workspace) -> Workspace:
    with (SAMPLES / "organisations.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            add_group(ws, row["名称"], row["上级"] or None)
    return ws


def test_the_generator_makes_only_allocated_numbers() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    assert spec is not None and spec.loader is not None
    ms = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ms)
    rng = random.Random(1)
    for index in [0, ms.PHONE_SPACE - 1, *(rng.randrange(ms.PHONE_SPACE) for _ in range(2000))]:
        number = ms._phone(index)
        assert normalize_phone(number).e164 == "+86" + number, number


@pytest.mark.parametrize("name", ["members.xlsx", "members.csv"])
def test_the_clean_lists_import_whole(branches: Workspace, name: str) -> None:
    s = import_members(branches, SAMPLES / name, ImportOptions(group_column="所属支部"))
    assert (s.rows, s.rejected, s.conflicts, s.warnings) == (720, 0, 0, 0)
    assert (s.added, s.duplicates) == (701, 19)  # 19 people belong to two branches


@pytest.mark.parametrize("name", ["members-messy-gb18030.csv", "members-messy.xlsx"])
def test_the_messy_lists_import_as_expected(branches: Workspace, name: str) -> None:
    expected = json.loads((SAMPLES / "members-messy.expected.json").read_text(encoding="utf-8"))["summary"]
    s = import_members(branches, SAMPLES / name, ImportOptions(group_column="所属支部"))
    assert s.rows == expected["rows"]
    assert s.rejected == expected["rejected_bad_phone"] + expected["unknown_group"]
    assert s.conflicts == expected["phone_conflicts"]
    assert s.rows - s.rejected == expected["valid_rows_without_create_groups"]


def test_the_unicode_text_list_imports_whole(branches: Workspace) -> None:
    s = import_members(branches, SAMPLES / "members-unicode.txt", ImportOptions(group_column="Group"))
    assert (s.rows, s.rejected, s.added) == (50, 0, 50)
