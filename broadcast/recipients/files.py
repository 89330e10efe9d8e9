"""Writing row files (exports, rejected rows) as .csv/.tsv/.txt or .xlsx, atomically.

Every cell a spreadsheet could take for a formula is neutralised as OWASP describes for CSV
injection: a text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
gets a leading ``'`` (``=HYPERLINK(…)`` is written ``'=HYPERLINK(…)``; the rest of the value is
kept), in .csv and .xlsx alike, and .xlsx text cells are typed as text, never as formulas.
One exception, chosen deliberately: a value that is only a sign and digits (an E.164 number
``+8613805141234``, an error code ``-1``) is written as it is, since it can call no function
and reference no cell or program; quoting it would put a ``'`` in front of every phone number.
``unescape_cell`` undoes the quote, so the import reads its own exports back unchanged.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from broadcast.errors import InputError

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
FORMULA_START = "=+-@\t\r"
_SIGNED_DIGITS = re.compile(r"[+-]?[0-9]+", re.ASCII)


def spreadsheet_safe(value: Any) -> Any:
    """``value`` as it may go into a spreadsheet cell: text that a spreadsheet would run as a
    formula gets a leading ``'`` (see the module doc); anything else is returned unchanged."""
    if isinstance(value, str) and value and value[0] in FORMULA_START and not _SIGNED_DIGITS.fullmatch(value):
        return "'" + value
    return value


def unescape_cell(value: Any) -> Any:
    """Undo ``spreadsheet_safe``: ``"'=SUM(1)"`` -> ``"=SUM(1)"``; anything else unchanged."""
    if isinstance(value, str) and len(value) > 1 and value[0] == "'" and value[1] in FORMULA_START:
        return value[1:]
    return value


def xlsx_cells(sheet: Any, values: Iterable[Any]) -> list[Any]:
    """One row of write-only .xlsx cells: text neutralised, typed as text and formatted as text
    (so Excel keeps ``13805141234`` as typed, not as 1.38E+10); other values as they are."""
    from openpyxl.cell import WriteOnlyCell

    cells = []
    for value in values:
        cell = WriteOnlyCell(sheet, value=spreadsheet_safe(value))
        if isinstance(value, str):
            cell.data_type = "s"
            cell.number_format = "@"
        cells.append(cell)
    return cells


@contextmanager
def atomic_writer(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    if path.suffix.lower() not in TEXT_SUFFIXES and path.suffix.lower() != ".xlsx":
        raise InputError(f"{path.name}: write .csv, .tsv, .txt or .xlsx")
    if not path.parent.is_dir():
        raise InputError(f"folder {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_rows(
    path: Path,
    suffix: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    encoding: str = "utf-8-sig",
    delimiter: str | None = None,
    sheet: str = "Sheet1",
) -> int:
    """Write a header row and ``rows``; returns the number of data rows."""
    count = 0
    if suffix.lower() == ".xlsx":
        from openpyxl import Workbook

        wb = Workbook(write_only=True)
        ws = wb.create_sheet(sheet)
        ws.append(xlsx_cells(ws, headers))
        for row in rows:
            ws.append(xlsx_cells(ws, row))
            count += 1
        wb.save(path)
        return count
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter or TEXT_SUFFIXES.get(suffix.lower(), ","))
        writer.writerow([spreadsheet_safe(v) for v in headers])
        for row in rows:
            writer.writerow(["" if v is None else spreadsheet_safe(v) for v in row])
            count += 1
    return count


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file (an imported file is audited by it), read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
