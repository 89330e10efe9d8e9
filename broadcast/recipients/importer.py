"""Contact-list import: a validated, atomic, idempotent session.

1. **Read** (streaming): every row is cleaned and validated; good rows go to a temporary staging
   table, rejected rows (with their Excel row number, the raw value and the reason) to another.
   Python memory does not grow with the file.
2. **Groups**: group names in the file that do not exist reject their rows, unless
   ``create_groups``.
3. **Merge**, phone by phone, in phone order: a new phone becomes a member; an existing one joins
   the groups named. The same phone twice in the file is one person (the repeats count as
   ``duplicates``); a name that differs from the one already known for the phone (earlier in the
   file or in the database) is a ``conflict``: that row is not applied and never overwrites.
4. The whole import is **one transaction**: it commits at the end or not at all (errors, Ctrl-C,
   a killed process); ``dry_run`` rolls it back after counting. Importing the same file again
   changes nothing and reports every person ``unchanged``.

Contact points besides the phone (email, WeCom / DingTalk / Feishu ids; ``contacts``) are checked
like the phone: a bad one rejects its row (field, value and reason), since the file is corrected and
imported again anyway, and nothing of the row is half-taken. A non-empty cell sets or replaces the
member's value; an empty one keeps what is known (as for title and notes). A value another member
also has is accepted with a ``warning`` on the first row giving it (a shared office mailbox is real).

Counts: ``added``/``updated``/``unchanged`` count people; ``rejected``/``conflicts``/``duplicates``
count rows; ``warnings`` counts rows accepted with a warning (a number in a range that only
``BROADCAST_EXTRA_MOBILE_PREFIXES`` allows), listed in ``errors`` with kind ``warning`` but not
written to the rejected-rows file. A text cell our own exports quoted (``'=…``, see
``files.spreadsheet_safe``) is read without the quote.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.db.audit_chain import note
from broadcast.db.bulk import insert_rows
from broadcast.db.types import UTCDateTime, utcnow
from broadcast.errors import ImportFileError, InputError
from broadcast.recipients.contacts import CONTACT_FIELDS, LABELS, check_contact, shared_in
from broadcast.recipients.files import file_sha256, unescape_cell
from broadcast.recipients.groups import clean_group_name, group_id, groups_t, members_t, memberships_t
from broadcast.recipients.members import clean_name
from broadcast.recipients.phones import normalize_phone
from broadcast.recipients.rejects import write_rejects
from broadcast.recipients.tables import FIELDS, SourceFormat, map_columns, open_table
from broadcast.workspace import Workspace

__all__ = ["ImportError_", "ImportOptions", "ImportSummary", "file_sha256", "import_members"]

BATCH = 5000
_meta = sa.MetaData()
stage_t = sa.Table(
    "_import_rows", _meta,
    sa.Column("row_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("phone", sa.String(20), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("grp", sa.String(200), nullable=False),
    sa.Column("title", sa.String(100), nullable=False),
    sa.Column("notes", sa.Text, nullable=False),
    *(sa.Column(f, sa.String(254), nullable=False) for f in CONTACT_FIELDS),
    sa.Index("ix_import_rows_phone", "phone", "row_no"),
    prefixes=["TEMPORARY"],
)
errors_t = sa.Table(
    "_import_errors", _meta,
    sa.Column("row_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(10), nullable=False),  # rejected | conflict
    sa.Column("field", sa.String(10), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    prefixes=["TEMPORARY"],
)
# What the merge decided, applied by set-based statements at the end (no per-row ORM work).
new_t = sa.Table(
    "_import_new", _meta,
    sa.Column("phone", sa.String(20), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("title", sa.String(100), nullable=False),
    sa.Column("notes", sa.Text, nullable=False),
    *(sa.Column(f, sa.String(254), nullable=False) for f in CONTACT_FIELDS),
    prefixes=["TEMPORARY"],
)
join_t = sa.Table(
    "_import_join", _meta,
    sa.Column("phone", sa.String(20), nullable=False),
    sa.Column("gid", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
)


@dataclass
class ImportError_:
    row: int
    field: str
    value: str
    reason: str
    kind: str = "rejected"

    def to_dict(self) -> dict[str, object]:
        return {"row": self.row, "field": self.field, "value": self.value, "reason": self.reason, "kind": self.kind}


@dataclass
class ImportSummary:
    file: str
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    duplicates: int = 0
    conflicts: int = 0
    warnings: int = 0
    groups_created: list[str] = field(default_factory=list)
    errors: list[ImportError_] = field(default_factory=list)
    dry_run: bool = False
    errors_file: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file, "rows": self.rows, "added": self.added, "updated": self.updated,
            "unchanged": self.unchanged, "rejected": self.rejected, "duplicates": self.duplicates,
            "conflicts": self.conflicts, "warnings": self.warnings, "groups_created": self.groups_created,
            "errors": [e.to_dict() for e in self.errors], "dry_run": self.dry_run, "errors_file": self.errors_file,
        }


@dataclass
class ImportOptions:
    group: str | None = None
    group_column: str | None = None
    create_groups: bool = False
    column_map: dict[str, str] = field(default_factory=dict)
    sheet: str | None = None
    encoding: str | None = None
    dry_run: bool = False
    errors_out: Path | None = None


def _cell(cells: Sequence[Any], index: int | None) -> Any:
    if index is None or index >= len(cells):
        return None
    return unescape_cell(cells[index])


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def import_members(
    ws: Workspace, path: str | Path, options: ImportOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    opts = options or ImportOptions()
    path = Path(path)
    if opts.group and opts.group_column:
        raise InputError("give either --group or --group-column, not both")
    overrides = dict(opts.column_map)
    if opts.group_column:
        overrides["group"] = opts.group_column
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ImportFileError(f"--map {unknown[0]}=...: unknown field {unknown[0]!r}; fields: {', '.join(FIELDS)}")
    if opts.errors_out is not None:
        opts.errors_out = Path(opts.errors_out)
        if opts.errors_out.resolve() == path.resolve():
            raise InputError("--errors-out must not overwrite the file being imported")
    summary = ImportSummary(file=str(path), dry_run=opts.dry_run)
    phones = ws.settings.default_region, tuple(ws.settings.extra_mobile_prefixes)  # region, extra prefixes

    with open_table(path, encoding=opts.encoding, sheet=opts.sheet, phone_column=overrides.get("phone")) as table:
        cols = map_columns(table.headers, overrides)
        fixed_group = clean_group_name(opts.group) if opts.group else None
        if fixed_group is None and "group" not in cols:
            raise ImportFileError(
                f"{path.name}: no group column found (headers: {', '.join(h for h in table.headers if h)})",
                hint="name the group with --group G, or the column with --group-column COLUMN",
            )
        tmp_errors: Path | None = None
        conn = ws.engine.connect()
        if ws.engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        trans = conn.begin()
        try:
            _meta.drop_all(conn, checkfirst=True)
            _meta.create_all(conn)
            if fixed_group is not None:
                _require_or_create_group(conn, fixed_group, opts.create_groups, summary)
            _stage(conn, table, cols, fixed_group, phones, summary, progress)
            _check_groups(conn, opts.create_groups, summary)
            _merge(conn, summary)
            _warn_shared(conn, summary)
            _collect_errors(conn, summary)
            tmp_errors = _write_errors(conn, path, opts, table.headers, table.format)
            _meta.drop_all(conn)
            if not opts.dry_run:
                note(conn, ws.operator, "member.import", f"file:{path.name}", sha256=file_sha256(path),
                     rows=summary.rows, added=summary.added, updated=summary.updated, unchanged=summary.unchanged,
                     rejected=summary.rejected, duplicates=summary.duplicates, conflicts=summary.conflicts,
                     warnings=summary.warnings, groups_created=summary.groups_created, group=opts.group,
                     group_column=opts.group_column)
            if opts.dry_run:
                trans.rollback()
            else:
                trans.commit()
        except BaseException:
            if trans.is_active:
                trans.rollback()
            if tmp_errors is not None:
                tmp_errors.unlink(missing_ok=True)
            raise
        finally:
            conn.close()
    if tmp_errors is not None and opts.errors_out is not None:
        tmp_errors.replace(opts.errors_out)
        summary.errors_file = str(opts.errors_out)
    return summary


def _require_or_create_group(conn: Connection, name: str, create: bool, summary: ImportSummary) -> None:
    if conn.execute(sa.select(groups_t.c.id).where(groups_t.c.name == name)).first():
        return
    if not create:
        group_id(conn, name)  # raises NotFoundError naming the group
    conn.execute(groups_t.insert().values(name=name, created_at=utcnow()))
    summary.groups_created.append(name)


STAGE_COLUMNS = ("row_no", "phone", "name", "grp", "title", "notes", *CONTACT_FIELDS)
ERROR_COLUMNS = ("row_no", "kind", "field", "value", "reason")
_group_name = functools.lru_cache(maxsize=4096)(clean_group_name)


def _stage(
    conn: Connection, table: Any, cols: dict[str, int], fixed_group: str | None, phones: tuple[str, tuple[str, ...]],
    summary: ImportSummary, progress: Callable[[int], None] | None,
) -> None:
    good: list[tuple[Any, ...]] = []
    bad: list[tuple[Any, ...]] = []
    i_phone, i_name, i_group = cols["phone"], cols.get("name"), cols.get("group")
    i_title, i_notes = cols.get("title"), cols.get("notes")
    i_contacts = [(f, cols.get(f)) for f in CONTACT_FIELDS if cols.get(f) is not None]

    def flush() -> None:
        insert_rows(conn, stage_t, STAGE_COLUMNS, good)
        insert_rows(conn, errors_t, ERROR_COLUMNS, bad)
        good.clear()
        bad.clear()

    for row_no, cells in table:
        raw_phone = _cell(cells, i_phone)
        name = clean_name(_cell(cells, i_name))
        grp = fixed_group if fixed_group is not None else _text(_cell(cells, i_group))
        if raw_phone in (None, "") and not name and not grp:
            continue  # a blank line (or only a 序号): not a row of data
        summary.rows += 1
        result = normalize_phone(raw_phone, *phones)
        if result.warning:
            summary.errors.append(ImportError_(row_no, "phone", _text(raw_phone), result.warning, "warning"))
        if result.e164 is None:
            bad.append((row_no, "rejected", "phone", _text(raw_phone), result.reason))
        elif not grp:
            bad.append((row_no, "rejected", "group", "", "group is empty"))
        else:
            try:
                grp = _group_name(grp) if fixed_group is None else grp
            except InputError as exc:
                bad.append((row_no, "rejected", "group", grp, exc.message))
            else:
                contacts, problem = _contacts(cells, i_contacts)
                if problem:
                    bad.append((row_no, "rejected", *problem))
                else:
                    good.append((row_no, result.e164, name, grp, clean_name(_cell(cells, i_title)),
                                 _text(_cell(cells, i_notes)), *contacts))
        if len(good) + len(bad) >= BATCH:
            flush()
            if progress:
                progress(summary.rows)
    flush()
    if progress:
        progress(summary.rows)


def _contacts(cells: Sequence[Any], columns: list[tuple[str, int | None]]) -> tuple[list[str], tuple[str, str, str] | None]:
    """The row's contact points in ``CONTACT_FIELDS`` order, or its first bad one as (field, value, reason)."""
    found = dict.fromkeys(CONTACT_FIELDS, "")
    for fld, index in columns:
        raw = _cell(cells, index)
        value, reason = check_contact(fld, raw)
        if reason:
            return [], (fld, _text(raw), reason)
        found[fld] = value
    return list(found.values()), None


def _check_groups(conn: Connection, create: bool, summary: ImportSummary) -> None:
    named = set(conn.execute(sa.select(stage_t.c.grp).distinct()).scalars())
    existing = set(conn.execute(sa.select(groups_t.c.name).where(groups_t.c.name.in_(named))).scalars())
    missing = sorted(named - existing)
    if not missing:
        return
    if create:
        now = utcnow()
        conn.execute(groups_t.insert(), [{"name": n, "created_at": now} for n in missing])
        summary.groups_created.extend(missing)
        return
    for name in missing:
        reason = f"group {name!r} does not exist (add it with 'broadcast group add', or import with --create-groups)"
        conn.execute(
            errors_t.insert().from_select(
                ["row_no", "kind", "field", "value", "reason"],
                sa.select(stage_t.c.row_no, sa.literal("rejected"), sa.literal("group"), stage_t.c.grp,
                          sa.literal(reason)).where(stage_t.c.grp == name),
            )
        )
        conn.execute(stage_t.delete().where(stage_t.c.grp == name))


def _chunks(conn: Connection) -> Iterator[Sequence[sa.Row[*tuple[Any, ...]]]]:
    """The staged rows joined with what the database knows, in (phone, row) order, in chunks
    that never split a phone, so each chunk's join is read before any of its phones is written."""
    s, m, g = stage_t, members_t, groups_t
    has_membership = (
        sa.select(sa.literal(1))
        .where(memberships_t.c.member_id == m.c.id, memberships_t.c.group_id == g.c.id)
        .exists()
    )
    base = (
        sa.select(s.c.row_no, s.c.phone, s.c.name, s.c.grp, s.c.title, s.c.notes, *(s.c[f] for f in CONTACT_FIELDS),
                  m.c.id.label("mid"), m.c.name.label("mname"), m.c.title.label("mtitle"),
                  m.c.notes.label("mnotes"), *(m.c[f].label(f"m{f}") for f in CONTACT_FIELDS),
                  g.c.id.label("gid"), has_membership.label("member_of"))
        .outerjoin(m, m.c.phone == s.c.phone)
        .outerjoin(g, g.c.name == s.c.grp)
        .order_by(s.c.phone, s.c.row_no)
    )
    last = ""
    while True:
        rows = conn.execute(base.where(s.c.phone > last).limit(BATCH)).all()
        if not rows:
            return
        if len(rows) == BATCH:
            tail = rows[-1].phone
            head = [r for r in rows if r.phone != tail]
            if head:
                rows = head
            else:  # one phone fills a whole chunk: take all of its rows
                rows = conn.execute(base.where(s.c.phone == tail)).all()
        last = rows[-1].phone
        yield rows


def _merge(conn: Connection, summary: ImportSummary) -> None:
    """Decide, phone by phone, what each person needs (into temporary tables), then apply it
    with a few set-based statements."""
    for rows in _chunks(conn):
        new_members: list[dict[str, Any]] = []
        joins: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        conflicts: list[dict[str, Any]] = []
        start = 0
        while start < len(rows):
            end = start
            while end < len(rows) and rows[end].phone == rows[start].phone:
                end += 1
            _merge_person(rows[start:end], summary, new_members, joins, updates, conflicts)
            start = end
        for table, data in ((new_t, new_members), (join_t, joins), (errors_t, conflicts)):
            if data:
                conn.execute(table.insert(), data)
        if updates:
            now = utcnow()
            conn.execute(
                members_t.update().where(members_t.c.id == sa.bindparam("b_id")).values(
                    name=sa.bindparam("b_name"), title=sa.bindparam("b_title"), notes=sa.bindparam("b_notes"),
                    **{f: sa.bindparam(f"b_{f}") for f in CONTACT_FIELDS}, updated_at=now,
                ),
                updates,
            )
    now = utcnow()
    conn.execute(members_t.insert().from_select(
        ["phone", "name", "title", "notes", *CONTACT_FIELDS, "created_at", "updated_at"],
        sa.select(new_t.c.phone, new_t.c.name, new_t.c.title, new_t.c.notes, *(new_t.c[f] for f in CONTACT_FIELDS),
                  sa.literal(now, UTCDateTime), sa.literal(now, UTCDateTime)),
    ))
    conn.execute(memberships_t.insert().from_select(
        ["member_id", "group_id", "created_at"],
        sa.select(members_t.c.id, join_t.c.gid, sa.literal(now, UTCDateTime))
        .join(members_t, members_t.c.phone == join_t.c.phone),
    ))


_contacts_of = operator.attrgetter(*CONTACT_FIELDS)
_known_of = operator.attrgetter(*(f"m{f}" for f in CONTACT_FIELDS))


def _merge_person(
    rows: Sequence[sa.Row[Any]], summary: ImportSummary, new_members: list[dict[str, Any]],
    joins: list[dict[str, Any]], updates: list[dict[str, Any]], conflicts: list[dict[str, Any]],
) -> None:
    first = rows[0]
    existing = first.mid is not None
    known_name = first.mname if existing and first.mname else next((r.name for r in rows if r.name), "")
    accepted = []
    for r in rows:
        if r.name and known_name and r.name != known_name:
            where = "in the database" if existing and first.mname else "on an earlier row"
            conflicts.append(dict(
                row_no=r.row_no, kind="conflict", field="name", value=r.name,
                reason=f"{r.phone} is {known_name!r} {where}, not {r.name!r}; fix the file or "
                       f"run 'broadcast member edit {r.phone} --name ...'",
            ))
            summary.conflicts += 1
        else:
            accepted.append(r)
    if not accepted:
        return
    summary.duplicates += len(accepted) - 1
    title = next((r.title for r in accepted if r.title), "")
    notes = next((r.notes for r in accepted if r.notes), "")
    values = _contacts_of(accepted[0])
    for r in accepted[1:]:  # the first value given wins
        values = tuple(a or b for a, b in zip(values, _contacts_of(r), strict=True))
    contacts = dict(zip(CONTACT_FIELDS, values, strict=True))
    gids = {r.gid for r in accepted}
    if not existing:
        new_members.append(dict(phone=first.phone, name=known_name, title=title, notes=notes, **contacts))
        joins.extend({"phone": first.phone, "gid": gid} for gid in sorted(gids))
        summary.added += 1
        return
    already = {r.gid for r in accepted if r.member_of}
    to_join = gids - already
    joins.extend({"phone": first.phone, "gid": gid} for gid in sorted(to_join))
    name = first.mname or known_name
    new_title = title or first.mtitle
    new_notes = notes or first.mnotes
    known = dict(zip(CONTACT_FIELDS, _known_of(first), strict=True))
    new_contacts = {f: contacts[f] or known[f] for f in CONTACT_FIELDS}  # an empty cell keeps what is known
    changed = (name, new_title, new_notes, new_contacts) != (first.mname, first.mtitle, first.mnotes, known)
    if changed:
        updates.append(dict(b_id=first.mid, b_name=name, b_title=new_title, b_notes=new_notes,
                            **{f"b_{f}": v for f, v in new_contacts.items()}))
    if to_join or changed:
        summary.updated += 1
    else:
        summary.unchanged += 1


def _warn_shared(conn: Connection, summary: ImportSummary) -> None:
    """A warning (the row is imported) on the first row giving an email or id that another member
    also has: allowed (an office's shared mailbox), but most often a copy-and-paste slip."""
    for fld in CONTACT_FIELDS:
        staged = sa.func.lower(stage_t.c[fld])
        if conn.execute(sa.select(stage_t.c.row_no).where(stage_t.c[fld] != "").limit(1)).first() is None:
            continue
        col = sa.func.lower(members_t.c[fld])
        shared = list(conn.execute(
            sa.select(col).where(members_t.c[fld] != "", col.in_(sa.select(staged).where(stage_t.c[fld] != "")))
            .group_by(col).having(sa.func.count() > 1).order_by(col)).scalars())
        for value, people in sorted(shared_in(conn, fld, shared).items()):
            row_no, text, phone = conn.execute(
                sa.select(stage_t.c.row_no, stage_t.c[fld], stage_t.c.phone).where(staged == value)
                .order_by(stage_t.c.row_no).limit(1)).one()
            who = "、".join(f"{n} {p}" for n, p in people if p != phone)
            summary.errors.append(ImportError_(row_no, fld, text, f"{LABELS[fld]} also used by {who}", "warning"))


def _collect_errors(conn: Connection, summary: ImportSummary) -> None:
    summary.rejected = conn.execute(
        sa.select(sa.func.count()).select_from(errors_t).where(errors_t.c.kind == "rejected")
    ).scalar_one()
    warned = [e for e in summary.errors if e.kind == "warning"]
    summary.warnings = len(warned)
    summary.errors = sorted([
        *(ImportError_(r.row_no, r.field, r.value, r.reason, r.kind)
          for r in conn.execute(sa.select(errors_t).order_by(errors_t.c.row_no))), *warned,
    ], key=lambda e: e.row)


def _write_errors(conn: Connection, path: Path, opts: ImportOptions, headers: list[str], fmt: SourceFormat) -> Path | None:
    """The rejected and conflicting rows, in a temporary file beside ``--errors-out`` (see ``rejects``)."""
    if opts.errors_out is None:
        return None
    reasons = conn.execute(sa.select(errors_t.c.row_no, errors_t.c.reason).order_by(errors_t.c.row_no)).all()
    return write_rejects(path, opts.errors_out, [(r.row_no, r.reason) for r in reasons], headers, fmt,
                         encoding=opts.encoding, sheet=opts.sheet, phone_column=opts.column_map.get("phone"))
