"""Tests for broadcast.messages.render."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcast.messages.render import (
    STANDARD_FIELDS,
    TemplateError,
    placeholders,
    render,
    standard_values,
    validate,
)

VALUES = {"name": "张三", "group": "第一支部", "x": 1}


# --- placeholders ------------------------------------------------------------

def test_placeholders_in_order_unique() -> None:
    assert placeholders("{name}同志，{group}{name}于{date}开会") == ["name", "group", "date"]
    assert placeholders("没有变量") == []
    assert placeholders("") == []
    assert placeholders("{_a1}{B_2}") == ["_a1", "B_2"]


def test_escaped_braces_are_not_placeholders() -> None:
    assert placeholders("{{name}}") == []
    assert placeholders("{{{name}}}") == ["name"]
    assert render("{{name}}", VALUES) == "{name}"
    assert render("{{{name}}}", VALUES) == "{张三}"
    assert render("a {{ b }} c", {}) == "a { b } c"
    assert render("}}{{", {}) == "}{"


INJECTIONS = [
    "{name.__class__}",
    "{name.__init__.__globals__}",
    "{0}",
    "{}",
    "{name!r}",
    "{name:{x}}",
    "{name:>10}",
    "{name[0]}",
    "{ name }",
    "{姓名}",
    "{1name}",
    "{name-x}",
    "{0.__class__}",
    "{name\n}",
]


@pytest.mark.parametrize("field", INJECTIONS)
def test_unsafe_placeholders_rejected(field: str) -> None:
    template = "您好" + field + "。"
    for fn in (placeholders, lambda t: render(t, VALUES), lambda t: validate(t, ["name", "x"])):
        with pytest.raises(TemplateError) as err:
            fn(template)
        msg = str(err.value)
        assert field.replace("\n", "") in msg.replace("\n", "")
        assert "column 3" in msg
        assert "only plain names like {name} are allowed" in msg
        assert err.value.field == field
        assert err.value.index == 2


def test_unsafe_message_matches_documented_shape() -> None:
    with pytest.raises(TemplateError, match=r"^unsafe placeholder \{name\.__class__\} at column 5: "
                       r"only plain names like \{name\} are allowed$"):
        render("你好同志{name.__class__}", VALUES)


def test_template_error_is_value_error() -> None:
    assert issubclass(TemplateError, ValueError)


@pytest.mark.parametrize(
    ("template", "column", "brace"),
    [("{name", 1, "{"), ("你好{name", 3, "{"), ("name}", 5, "}"), ("你好{name}}", 9, "}"),
     ("{", 1, "{"), ("}", 1, "}"), ("{a {b}", 1, "{"), ("{{{", 3, "{")],
)
def test_unbalanced_braces(template: str, column: int, brace: str) -> None:
    with pytest.raises(TemplateError, match=rf"unbalanced '\{brace}' at column {column}\b"):
        placeholders(template)
    with pytest.raises(TemplateError):
        render(template, VALUES)


def test_position_reports_line_on_multiline_templates() -> None:
    with pytest.raises(TemplateError, match=r"at line 2, column 3:"):
        placeholders("第一行\nab{0}")


def test_long_field_is_shortened_in_message() -> None:
    with pytest.raises(TemplateError) as err:
        placeholders("{" + "a." * 100 + "}")
    assert "…" in str(err.value)
    assert len(str(err.value)) < 200


# --- validate ----------------------------------------------------------------

def test_validate_accepts_known_names() -> None:
    validate("{name}{group}", ["name", "group", "date"])
    validate("纯文本", [])


def test_validate_unknown_lists_allowed() -> None:
    with pytest.raises(TemplateError) as err:
        validate("您好{nmae}", STANDARD_FIELDS)
    msg = str(err.value)
    assert "{nmae}" in msg and "column 3" in msg
    for name in STANDARD_FIELDS:
        assert "{" + name + "}" in msg
    assert err.value.field == "nmae"


# --- render ------------------------------------------------------------------

def test_render_basic() -> None:
    assert render("{name}同志：请于{x}点到{group}开会。", VALUES) == "张三同志：请于1点到第一支部开会。"
    assert render("", {}) == ""
    assert render("无变量", {}) == "无变量"


def test_render_values_are_not_rescanned_or_formatted() -> None:
    values = {"name": "{group}", "group": "{0.__class__}"}
    assert render("{name}/{group}", values) == "{group}/{0.__class__}"


def test_render_uses_str_not_format() -> None:
    class Evil:
        def __format__(self, spec: str) -> str:  # pragma: no cover - must not be called
            raise AssertionError("format called")

        def __str__(self) -> str:
            return "ok"

    assert render("{name}", {"name": Evil()}) == "ok"


def test_render_does_not_use_str_format() -> None:
    import broadcast.messages.render as mod

    source = open(mod.__file__, encoding="utf-8").read()
    assert ".format(" not in source and "format_map" not in source


def test_render_unknown_name() -> None:
    with pytest.raises(TemplateError, match=r"unknown placeholder \{date\} at column 1"):
        render("{date}", VALUES)


def test_render_none_value_rejected() -> None:
    with pytest.raises(TemplateError, match=r"\{name\} at column 1 has no value"):
        render("{name}", {"name": None})


# --- standard values ---------------------------------------------------------

def test_standard_values() -> None:
    vals = standard_values(name="张三", group="第一支部", when=datetime.date(2026, 11, 27),
                           phone="13800138000")
    assert vals == {
        "name": "张三", "group": "第一支部", "date": "11月27日", "weekday": "星期五",
        "phone": "13800138000", "year": 2026, "month": 11, "day": 27,
        "full_date": "2026年11月27日",
    }
    assert set(vals) == set(STANDARD_FIELDS)
    assert standard_values(name="", group="", when=datetime.date(2026, 1, 5))["phone"] == ""
    assert render("{full_date}（{weekday}）", vals) == "2026年11月27日（星期五）"


@pytest.mark.parametrize(
    ("day", "weekday"),
    [(23, "星期一"), (24, "星期二"), (25, "星期三"), (26, "星期四"), (27, "星期五"),
     (28, "星期六"), (29, "星期日")],
)
def test_weekday_names(day: int, weekday: str) -> None:
    when = datetime.date(2026, 11, day)
    assert standard_values(name="a", group="b", when=when)["weekday"] == weekday


def test_standard_values_accepts_datetime() -> None:
    vals = standard_values(name="a", group="b", when=datetime.datetime(2026, 3, 1, 8, 30))
    assert (vals["date"], vals["weekday"]) == ("3月1日", "星期日")


def test_standard_fields_start_with_documented_core() -> None:
    assert STANDARD_FIELDS[:5] == ("name", "group", "date", "weekday", "phone")


# --- properties --------------------------------------------------------------

_brace_heavy = st.text(alphabet=st.sampled_from(list("{}{}name.![]:0 x$中")), max_size=40)


@settings(max_examples=400)
@given(st.one_of(st.text(), _brace_heavy),
       st.dictionaries(st.sampled_from(["name", "x", "a", "_"]), st.one_of(st.none(), st.text(), st.integers())))
def test_property_only_template_error(template: str, values: dict[str, object]) -> None:
    try:
        out = render(template, values)
    except TemplateError:
        return
    assert isinstance(out, str)


@settings(max_examples=300)
@given(st.text())
def test_property_text_without_braces_renders_to_itself(text: str) -> None:
    text = text.replace("{", "").replace("}", "")
    assert render(text, {}) == text
    assert placeholders(text) == []


@settings(max_examples=300)
@given(st.text())
def test_property_escaped_text_round_trips(text: str) -> None:
    escaped = text.replace("{", "{{").replace("}", "}}")
    assert render(escaped, {}) == text
