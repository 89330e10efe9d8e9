"""Mainland mobiles are checked against the ranges phonenumbers knows as allocated (its CN
metadata), not just against ``1[3-9]`` + 9 digits; BROADCAST_EXTRA_MOBILE_PREFIXES lets a range
allocated after the installed release through, with a warning."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from broadcast.config import load_settings
from broadcast.errors import ConfigError, InputError
from broadcast.recipients.groups import add_group
from broadcast.recipients.importer import ImportOptions, import_members
from broadcast.recipients.members import add_member, edit_member, list_members, parse_phone, remove_member
from broadcast.recipients.optouts import add_optout
from broadcast.recipients.phones import normalize_phone
from broadcast.workspace import Workspace
from tests.helpers.files import read_csv, write_csv


def library_says_mobile(national: str) -> bool:
    num = phonenumbers.parse("+86" + national)
    return phonenumbers.is_valid_number(num) and phonenumbers.number_type(num) in (
        phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


def sample_numbers(per_prefix: int = 40, seed: int = 20261204) -> list[str]:
    rng = random.Random(seed)
    return [f"{prefix}{rng.randrange(10**8):08d}" for prefix in range(130, 200) for _ in range(per_prefix)]


def test_accepts_exactly_the_numbers_phonenumbers_calls_valid_mobiles() -> None:
    numbers = sample_numbers()  # 2,800 numbers over the prefixes 130-199
    ours = {n for n in numbers if normalize_phone(n).e164 is not None}
    theirs = {n for n in numbers if library_says_mobile(n)}
    assert ours == theirs
    # every 11-digit number the library calls valid here is a mobile: nothing else is lost
    assert {n for n in numbers if phonenumbers.is_valid_number(phonenumbers.parse("+86" + n))} == theirs
    assert 0 < len(theirs) < len(numbers)


@pytest.mark.parametrize("text", ["15412345678", "+86 154 1234 5678", "008615412345678", "8615412345678",
                                  15412345678, 15412345678.0, "１５４１２３４５６７８", "19412345678", "14012345678"])
def test_an_unallocated_range_is_rejected_with_the_reason(text: object) -> None:
    result = normalize_phone(text)
    assert result.e164 is None and result.warning is None
    assert result.reason is not None and "not in an allocated mainland mobile range" in result.reason
    assert "BROADCAST_EXTRA_MOBILE_PREFIXES" in result.reason and "\n" not in result.reason


def test_an_extra_prefix_is_accepted_with_a_warning_and_only_that_prefix() -> None:
    ok = normalize_phone("154 1234 5678", extra_prefixes=("1541",))
    assert ok.e164 == "+8615412345678" and ok.reason is None
    assert ok.warning is not None and "1541" in ok.warning and "BROADCAST_EXTRA_MOBILE_PREFIXES" in ok.warning
    assert normalize_phone("15422345678", extra_prefixes=("1541",)).e164 is None
    # an allocated number never warns, whatever the setting
    assert normalize_phone("13805141234", extra_prefixes=("138",)).warning is None


def test_property_with_extra_prefixes() -> None:
    extra = ("154", "1940", "140")
    for n in sample_numbers(per_prefix=10, seed=7):
        result = normalize_phone(n, extra_prefixes=extra)
        allowed = library_says_mobile(n) or n.startswith(extra)
        assert (result.e164 is not None) == allowed, n
        assert (result.warning is not None) == (allowed and not library_says_mobile(n)), n


def test_the_setting_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_EXTRA_MOBILE_PREFIXES", "1940, 154，1411")
    assert load_settings().extra_mobile_prefixes == ["1940", "154", "1411"]
    monkeypatch.setenv("BROADCAST_EXTRA_MOBILE_PREFIXES", "")
    assert load_settings().extra_mobile_prefixes == []
    monkeypatch.setenv("BROADCAST_EXTRA_MOBILE_PREFIXES", "1940,12x")
    with pytest.raises(ConfigError, match="BROADCAST_EXTRA_MOBILE_PREFIXES.*'12x' is not the start of a mainland mobile"):
        load_settings()


@pytest.fixture
def branch(ws: Workspace) -> Workspace:
    add_group(ws, "城南社区党支部")
    return ws


def _with_extra(ws: Workspace, *prefixes: str) -> Workspace:
    return Workspace(ws.settings.model_copy(update={"extra_mobile_prefixes": list(prefixes)}), ws.engine)


ROWS = [
    [1, "张三", "13805141234", "城南社区党支部"],
    [2, "李四", "15412345678", "城南社区党支部"],  # a typo for 158: no operator issues 154
    [3, "王五", "19401234567", "城南社区党支部"],  # a range newer than the installed phonenumbers
]


def test_import_rejects_unallocated_numbers_into_the_rejects_file(branch: Workspace, tmp_path) -> None:
    f = write_csv(tmp_path / "list.csv", ROWS, headers=["序号", "姓名", "手机号码", "所属支部"])
    out = tmp_path / "fix-me.csv"
    s = import_members(branch, f, ImportOptions(errors_out=out))
    assert (s.added, s.rejected, s.warnings) == (1, 2, 0)
    assert [(e.row, e.field, e.value, e.kind) for e in s.errors] == [
        (3, "phone", "15412345678", "rejected"), (4, "phone", "19401234567", "rejected")]
    assert all("not in an allocated mainland mobile range" in e.reason for e in s.errors)
    rows = read_csv(out, "utf-8-sig")
    assert [r[2] for r in rows[1:]] == ["15412345678", "19401234567"]
    assert "not in an allocated mainland mobile range" in rows[1][-1]


def test_import_accepts_an_extra_prefix_with_a_warning_not_in_the_rejects_file(branch: Workspace, tmp_path) -> None:
    f = write_csv(tmp_path / "list.csv", ROWS, headers=["序号", "姓名", "手机号码", "所属支部"])
    out = tmp_path / "fix-me.csv"
    s = import_members(_with_extra(branch, "1940"), f, ImportOptions(errors_out=out))
    assert (s.added, s.rejected, s.warnings) == (2, 1, 1)
    assert [(e.row, e.kind) for e in s.errors] == [(3, "rejected"), (4, "warning")]
    warning = s.errors[1]
    assert warning.field == "phone" and warning.value == "19401234567" and "1940" in warning.reason
    assert s.to_dict()["warnings"] == 1
    assert [r[1] for r in read_csv(out, "utf-8-sig")[1:]] == ["李四"]  # only the rejected row
    assert sorted(m.phone for m in list_members(branch)) == ["+8613805141234", "+8619401234567"]


def test_member_add_checks_ranges_and_reports_the_warning(branch: Workspace) -> None:
    with pytest.raises(InputError, match="not in an allocated mainland mobile range"):
        add_member(branch, "李四", "15412345678", ["城南社区党支部"])
    added = add_member(_with_extra(branch, "154"), "李四", "15412345678", ["城南社区党支部"])
    assert added.created and added.warning is not None and "154" in added.warning
    assert add_member(branch, "张三", "13805141234", ["城南社区党支部"]).warning is None
    with pytest.raises(InputError, match="not in an allocated mainland mobile range"):
        edit_member(branch, "13805141234", new_phone="14012345678")


def test_a_number_already_stored_can_still_be_opted_out_and_removed(branch: Workspace) -> None:
    """A number imported before the check (or under a prefix since removed from the setting)
    must stay reachable by the commands that stop messages to it."""
    add_member(_with_extra(branch, "154"), "李四", "15412345678", ["城南社区党支部"])
    assert parse_phone("15412345678") == "+8615412345678"
    add_optout(branch, "15412345678")
    assert remove_member(branch, "15412345678").name == "李四"
