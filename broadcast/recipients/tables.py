"""Reading contact lists: CSV/TSV/TXT in any encoding Excel writes, and .xlsx, row by row.

``open_table(path)`` finds the header row (the first of the first 10 rows that names a phone
column, so a title row above the headers is fine), and yields ``(row_number, cells)`` with the row
number as Excel shows it (the first line is row 1). Nothing holds the whole file in memory.

Encodings: a BOM decides (UTF-8, UTF-16 LE/BE); UTF-16 without a BOM is recognised by its NUL
bytes; otherwise the whole file is checked as UTF-8 in chunks, and read as GB18030 (a superset of
GBK and GB2312, what Chinese Windows Excel writes) if it is not valid UTF-8.
"""

from __future__ import annotations

import codecs
import csv
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broadcast.errors import ImportFileError

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
XLSX_SUFFIXES = {".xlsx", ".xlsm"}
HEADER_SCAN_ROWS = 10

# Field -> recognised header names, most specific first (normalised: see normalize_header).
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "phone": (
        "手机号码", "手机号", "手机", "移动电话", "手机号码1", "联系电话", "联系方式", "电话号码", "电话",
        "mobile", "mobilephone", "mobilenumber", "cellphone", "cell", "phone", "phonenumber", "tel", "telephone",
    ),
    "name": ("姓名", "党员姓名", "名字", "name", "fullname", "membername"),
    "group": (
        "所属支部", "所在支部", "党支部", "支部", "所属党组织", "所属组织", "党组织", "组织", "所在单位", "单位",
        "group", "branch", "organisation", "organization", "org",
    ),
    "title": ("职务", "党内职务", "title", "position", "role", "job"),
    "notes": ("备注", "说明", "notes", "note", "remark", "remarks", "comment", "comments"),
    "email": ("邮箱", "电子邮箱", "电子邮件", "邮件地址", "邮箱地址", "email", "emailaddress", "mail"),
    "wecom": ("企业微信", "企业微信账号", "企业微信id", "政务微信", "政务微信账号", "wecom", "wecomid", "wework", "userid"),
    "dingtalk": ("钉钉", "钉钉账号", "钉钉id", "浙政钉", "dingtalk", "dingtalkid", "dingding"),
    "feishu": ("飞书", "飞书账号", "飞书id", "feishu", "feishuid", "lark"),
}
FIELDS = tuple(FIELD_ALIASES)

_HEADER_JUNK = re.compile(r"[\s_\-:：*＊]+|[(（\[【].*?[)）\]】]")


def normalize_header(text: object) -> str:
    """``' 手机号码（必填）'`` -> ``'手机号码'``; ``'Mobile Phone'`` -> ``'mobilephone'``."""
    if text is None:
        return ""
    return _HEADER_JUNK.sub("", unicodedata.normalize("NFKC", str(text))).lower()


@dataclass(frozen=True)
class SourceFormat:
    """How the file was written, so rejected rows can be written back the same way."""

    kind: str  # "csv" or "xlsx"
    encoding: str | None = None
    delimiter: str = ","
    sheet: str | None = None


@dataclass
class Table:
    path: Path
    format: SourceFormat
    headers: list[str]
    header_row: int
    _rows: Iterator[tuple[int, list[Any]]] = field(repr=False)
    _closer: Any = field(default=None, repr=False)

    def __iter__(self) -> Iterator[tuple[int, list[Any]]]:
        return self._rows

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_table(
    path: str | Path, *, encoding: str | None = None, sheet: str | None = None, phone_column: str | None = None
) -> Table:
    """Open a contact list. ``phone_column`` (from ``--map phone=...``) names the phone column
    when its header is not one of the recognised names; a letter or number means the first
    non-blank row holds the headers."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in XLSX_SUFFIXES:
        return _open_xlsx(path, sheet, phone_column)
    if suffix in (".xls", ".et"):
        raise ImportFileError(
            f"{path.name}: {suffix} (Excel 97-2003 / WPS) files cannot be read; save the sheet as .xlsx or CSV"
        )
    if suffix in CSV_SUFFIXES or suffix == "":
        return _open_csv(path, encoding, phone_column)
    raise ImportFileError(f"{path.name}: unsupported file type {suffix!r}; use .xlsx, .csv, .tsv or .txt")


# -- CSV -------------------------------------------------------------------------------------

def detect_encoding(path: Path, chunk_size: int = 1 << 16) -> str:
    """The encoding of a text file written by Excel, WPS or a text editor (see module doc)."""
    with path.open("rb") as fh:
        head = fh.read(4096)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        if head and head.count(0) > len(head) // 4:
            even_nuls = head[0::2].count(0)
            return "utf-16-be" if even_nuls > len(head) // 4 else "utf-16-le"
        decoder = codecs.getincrementaldecoder("utf-8")()
        chunk = head
        try:
            while chunk:
                decoder.decode(chunk)
                chunk = fh.read(chunk_size)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "gb18030"
    return "utf-8"


def _check_encoding(name: str) -> str:
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise ImportFileError(f"unknown encoding {name!r}; try utf-8, gb18030, gbk or utf-16") from None
    # GBK and GB2312 files are read as GB18030, their superset: nothing readable is lost.
    return "gb18030" if info.name in ("gbk", "gb2312") else info.name


def _sniff_delimiter(first_line: str, suffix: str) -> str:
    if suffix == ".tsv":
        return "\t"
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _open_csv(path: Path, encoding: str | None, phone_column: str | None) -> Table:
    enc = _check_encoding(encoding) if encoding else detect_encoding(path)
    fh = path.open("r", encoding=enc, newline="")
    try:
        first_line = fh.readline()
        fh.seek(0)
    except UnicodeDecodeError:
        fh.close()
        raise ImportFileError(f"{path.name}: row 1 cannot be read as {enc}; give the right --encoding") from None
    delimiter = _sniff_delimiter(first_line, path.suffix.lower())
    reader = csv.reader(fh, delimiter=delimiter)

    def rows() -> Iterator[tuple[int, list[Any]]]:
        row_no = 0
        try:
            for row_no, cells in enumerate(reader, start=1):
                yield row_no, cells
        except UnicodeDecodeError:
            raise ImportFileError(
                f"{path.name}: row {row_no + 1} cannot be read as {enc}; give the right --encoding (e.g. gb18030)"
            ) from None
        except csv.Error as exc:
            raise ImportFileError(f"{path.name}: row {row_no + 1}: {exc}") from None

    fmt = SourceFormat("csv", encoding=enc, delimiter=delimiter)
    return _with_header(path, fmt, rows(), fh.close, phone_column)


# -- XLSX ------------------------------------------------------------------------------------

def _open_xlsx(path: Path, sheet: str | None, phone_column: str | None) -> Table:
    import zipfile

    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ImportFileError(f"{path.name}: not a readable .xlsx file ({exc})") from None
    if sheet is None:
        ws = wb.worksheets[0]
    elif sheet in wb.sheetnames:
        ws = wb[sheet]
    else:
        wb.close()
        raise ImportFileError(f"{path.name}: no sheet named {sheet!r}; sheets: {', '.join(wb.sheetnames)}")

    def rows() -> Iterator[tuple[int, list[Any]]]:
        for row_no, values in enumerate(ws.iter_rows(values_only=True), start=1):
            yield row_no, list(values)

    fmt = SourceFormat("xlsx", sheet=ws.title)
    return _with_header(path, fmt, rows(), wb.close, phone_column)


# -- header detection ------------------------------------------------------------------------

def _is_blank(cells: Sequence[Any]) -> bool:
    return all(c is None or str(c).strip() == "" for c in cells)


def _with_header(
    path: Path, fmt: SourceFormat, rows: Iterator[tuple[int, list[Any]]], closer: Any, phone_column: str | None
) -> Table:
    phone_names = set(FIELD_ALIASES["phone"])
    positional = phone_column is not None and re.fullmatch(r"[A-Za-z]{1,2}|\d+", phone_column) is not None
    if phone_column is not None and not positional:
        phone_names = {normalize_header(phone_column)}
    first_seen: list[str] | None = None
    try:
        for row_no, cells in rows:
            if _is_blank(cells):
                if row_no >= HEADER_SCAN_ROWS:
                    break
                continue
            headers = ["" if c is None else str(c).strip() for c in cells]
            if first_seen is None:
                first_seen = headers
            if positional or any(normalize_header(h) in phone_names for h in headers):
                return Table(path, fmt, headers, row_no, rows, closer)
            if row_no >= HEADER_SCAN_ROWS:
                break
    except BaseException:
        closer()
        raise
    closer()
    seen = ", ".join(h for h in (first_seen or []) if h) or "none"
    if phone_column is not None:
        raise ImportFileError(f"--map phone={phone_column}: no such column (headers: {seen})")
    raise ImportFileError(
        f"{path.name}: no phone column found (headers seen: {seen})",
        hint="name the column with --map phone=COLUMN",
    )


# -- column mapping --------------------------------------------------------------------------

def _column_index(headers: Sequence[str], spec: str) -> int | None:
    wanted = normalize_header(spec)
    for i, h in enumerate(headers):
        if normalize_header(h) == wanted and wanted:
            return i
    if re.fullmatch(r"[A-Za-z]{1,2}", spec):  # an Excel column letter: A, B, ..., AA
        index = 0
        for ch in spec.upper():
            index = index * 26 + (ord(ch) - 64)
        return index - 1
    if spec.isdigit() and int(spec) >= 1:
        return int(spec) - 1
    return None


def map_columns(headers: Sequence[str], overrides: dict[str, str] | None = None) -> dict[str, int]:
    """Field name -> column index, from recognised header names, with ``overrides``
    (``{"phone": "联系方式"}``, a header, an Excel letter or a 1-based number) taking precedence."""
    mapping: dict[str, int] = {}
    normalised = [normalize_header(h) for h in headers]
    for fld, aliases in FIELD_ALIASES.items():
        for alias in aliases:  # the most specific alias wins when several columns match
            if alias in normalised:
                mapping[fld] = normalised.index(alias)
                break
    for fld, spec in (overrides or {}).items():
        if fld not in FIELD_ALIASES:
            raise ImportFileError(f"--map {fld}={spec}: unknown field {fld!r}; fields: {', '.join(FIELDS)}")
        index = _column_index(headers, spec)
        if index is None:
            seen = ", ".join(h for h in headers if h)
            raise ImportFileError(f"--map {fld}={spec}: no such column (headers: {seen})")
        mapping[fld] = index
    if "phone" not in mapping:
        seen = ", ".join(h for h in headers if h) or "none"
        raise ImportFileError(f"no phone column found (headers seen: {seen})", hint="name it with --map phone=COLUMN")
    return mapping
