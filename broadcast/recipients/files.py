"""Writing row files (exports, rejected rows) as .csv/.tsv/.txt or .xlsx, atomically."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from broadcast.errors import InputError

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


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
        from openpyxl.cell import WriteOnlyCell

        wb = Workbook(write_only=True)
        ws = wb.create_sheet(sheet)
        ws.append(list(headers))
        for row in rows:
            cells = []
            for value in row:
                cell = WriteOnlyCell(ws, value=value)
                if isinstance(value, str):
                    cell.number_format = "@"  # text: Excel must not turn numbers into 1.38E+10
                cells.append(cell)
            ws.append(cells)
            count += 1
        wb.save(path)
        return count
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter or TEXT_SUFFIXES.get(suffix.lower(), ","))
        writer.writerow(headers)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
            count += 1
    return count
