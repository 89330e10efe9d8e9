"""Template and series files.

A template is one ``NAME.txt`` file in the templates folder (``BROADCAST_TEMPLATES_DIR``,
default ``./templates``); its name is the file's stem and its text the whole file (UTF-8, a BOM
and the final newline dropped). A daily series is ``series/NAME.txt`` there (or any file
given by path): one message per line; blank lines and lines starting with ``#`` are skipped.
A line that starts with a date and a colon (``2026-12-24: 平安夜…`` or ``2026-12-24：…``) is
*pinned*: it goes out on that date; the other lines take the schedule's sending days in order.
Placeholders are checked by :mod:`broadcast.messages.render` (plain ``{name}`` only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from broadcast.errors import InputError, NotFoundError
from broadcast.messages.render import TemplateError, placeholders

__all__ = ["SeriesFile", "SeriesLine", "TemplateInfo", "list_templates", "load_series", "load_template", "show_template"]


@dataclass
class TemplateInfo:
    name: str
    kind: str  # "template" or "series"
    path: Path
    text: str
    placeholders: list[str] = field(default_factory=list)
    lines: int = 1
    error: str | None = None  # the template is malformed (unsafe or unbalanced placeholder)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path),
            "text": self.text,
            "placeholders": self.placeholders,
            "lines": self.lines,
            "error": self.error,
        }


@dataclass(frozen=True)
class SeriesLine:
    number: int  # the line's number in the file, as an editor shows it
    text: str
    pinned: date | None = None  # the date the line is pinned to


@dataclass
class SeriesFile:
    name: str
    path: Path
    entries: list[SeriesLine]

    @property
    def lines(self) -> list[str]:
        """The texts of every line (pinned ones without their date)."""
        return [e.text for e in self.entries]


_PIN = re.compile(r"(\d{4}-\d{1,2}-\d{1,2})\s*[:：]\s*(.*)")


def _series_entries(path: Path, text: str) -> list[SeriesLine]:
    out: list[SeriesLine] = []
    pinned: dict[date, int] = {}
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _PIN.fullmatch(line)
        if not m:
            out.append(SeriesLine(n, line))
            continue
        try:
            day = date(*map(int, m.group(1).split("-")))
        except ValueError:
            raise InputError(f"series {path}, line {n}: {m.group(1)!r} is not a date",
                             hint="a pinned line starts with its date: 2026-12-24: text") from None
        if not m.group(2).strip():
            raise InputError(f"series {path}, line {n}: the line pinned to {day} has no text")
        if day in pinned:
            raise InputError(f"series {path}, line {n}: {day} already has line {pinned[day]} pinned to it",
                             hint="pin one line to a day")
        pinned[day] = n
        out.append(SeriesLine(n, m.group(2).strip(), day))
    return out


def _read(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text", hint="save the file as UTF-8") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_name(name: str) -> str:
    name = name.strip()
    if name.endswith(".txt"):
        name = name[:-4]
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise InputError(f"{name!r} is not a template name", hint="see 'broadcast template list'")
    return name


def _info(name: str, kind: str, path: Path, text: str, lines: int = 1) -> TemplateInfo:
    try:
        names = placeholders(text)
        error = None
    except TemplateError as exc:
        names, error = [], str(exc)
    return TemplateInfo(name, kind, path, text, names, lines, error)


def _series_lines(text: str) -> list[str]:
    return [s for s in (line.strip() for line in text.split("\n")) if s and not s.startswith("#")]


def list_templates(folder: Path) -> list[TemplateInfo]:
    """Templates (``*.txt``) then series (``series/*.txt``), each sorted by name."""
    out: list[TemplateInfo] = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.txt")):
            out.append(_info(path.stem, "template", path, _read(path).rstrip("\n")))
        for path in sorted((folder / "series").glob("*.txt")):
            lines = _series_lines(_read(path))
            out.append(_info(path.stem, "series", path, "\n".join(lines), len(lines)))
    return out


def load_template(folder: Path, name: str) -> str:
    """The text of template ``name`` (final newline dropped)."""
    name = _check_name(name)
    path = folder / f"{name}.txt"
    if not path.is_file():
        raise NotFoundError(
            f"no template named {name!r} in {folder}",
            hint="see 'broadcast template list' (BROADCAST_TEMPLATES_DIR sets the folder)",
        )
    return _read(path).rstrip("\n")


def show_template(folder: Path, name: str) -> TemplateInfo:
    clean = _check_name(name)
    if (folder / f"{clean}.txt").is_file():
        return _info(clean, "template", folder / f"{clean}.txt", load_template(folder, clean))
    series = load_series(folder, clean)
    return _info(series.name, "series", series.path, "\n".join(series.lines), len(series.lines))


def load_series(folder: Path, name_or_path: str) -> SeriesFile:
    """A series by file path, or by name from ``<templates>/series/NAME.txt``."""
    given = Path(name_or_path).expanduser()
    if given.is_file():
        path = given
    else:
        name = _check_name(name_or_path)
        path = folder / "series" / f"{name}.txt"
        if not path.is_file():
            raise NotFoundError(
                f"no series file {name_or_path!r} (looked for it as a path and as {path})",
                hint="give a path to a .txt file with one message per line, or see 'broadcast template list'",
            )
    entries = _series_entries(path, _read(path))
    if not entries:
        raise InputError(f"the series {path} has no lines", hint="write one message per line")
    return SeriesFile(path.stem, path, entries)
