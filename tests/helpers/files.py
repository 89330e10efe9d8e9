"""Helpers that write real contact-list files the way Excel and WPS do."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HEADERS = ["序号", "姓名", "手机号码", "所属支部", "职务", "备注"]


def write_csv(path: Path, rows: Sequence[Sequence[Any]], *, encoding: str = "utf-8", delimiter: str = ",",
              headers: Sequence[str] | None = HEADERS, title: str | None = None) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    if title:
        writer.writerow([title])
    if headers is not None:
        writer.writerow(headers)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, rows: Sequence[Sequence[Any]], *, headers: Sequence[str] | None = HEADERS,
               sheet: str = "通讯录", title: str | None = None, extra_sheet: str | None = None) -> Path:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    if title:
        ws.append([title])
    if headers is not None:
        ws.append(list(headers))
    for row in rows:
        ws.append(list(row))
    if extra_sheet:
        wb.create_sheet(extra_sheet).append(["x"])
    wb.save(path)
    return path


def read_csv(path: Path, encoding: str) -> list[list[str]]:
    with path.open(encoding=encoding, newline="") as fh:
        sample = fh.readline()
        fh.seek(0)
        delimiter = "\t" if "\t" in sample else ","
        return list(csv.reader(fh, delimiter=delimiter))
