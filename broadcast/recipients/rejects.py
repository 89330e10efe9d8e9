"""The rejected-rows file of an import (``--errors-out``): every rejected or conflicting row as it is
in the source file (read again, streaming), with a ``reason`` column, in the input's format
(encoding, delimiter, or .xlsx)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from broadcast.errors import InputError
from broadcast.recipients.files import write_rows
from broadcast.recipients.tables import SourceFormat, open_table


def _fit(cells: list[Any], width: int) -> list[Any]:
    return (cells + [""] * width)[:width]


def _error_rows(path: Path, reasons: Sequence[tuple[int, str]], width: int, **table: Any) -> Iterator[list[Any]]:
    it = iter(reasons)
    wanted = next(it, None)
    if wanted is None:
        return
    with open_table(path, **table) as rows:
        for row_no, cells in rows:
            while wanted is not None and wanted[0] < row_no:
                wanted = next(it, None)
            if wanted is None:
                return
            if wanted[0] == row_no:
                yield [*_fit(["" if c is None else c for c in cells], width), wanted[1]]


def write_rejects(path: Path, target: Path, reasons: Sequence[tuple[int, str]], headers: list[str], fmt: SourceFormat,
                  *, encoding: str | None, sheet: str | None, phone_column: str | None) -> Path:
    """Write the rows of ``path`` named in ``reasons`` ((row number, reason), in row order) to a
    temporary file beside ``target``; the caller moves it into place once the import is over, so a
    failed import leaves no file."""
    if not target.parent.is_dir():
        raise InputError(f"--errors-out: folder {str(target.parent)!r} does not exist")
    suffix = ".xlsx" if fmt.kind == "xlsx" else (target.suffix.lower() or ".csv")
    out_encoding = fmt.encoding or "utf-8-sig"
    if out_encoding in ("utf-16-le", "utf-16-be"):
        out_encoding = "utf-16"  # with a BOM, so Excel recognises it
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        rows = _error_rows(path, reasons, len(headers), encoding=encoding, sheet=sheet, phone_column=phone_column)
        write_rows(tmp, suffix, [*headers, "reason"], rows, encoding=out_encoding,
                   delimiter=fmt.delimiter if fmt.kind == "csv" else None, sheet=fmt.sheet or "Sheet1")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp
