"""The hash-chained audit trail, as the auditor sees it. The chain itself (append, read, verify,
export) lives in :mod:`broadcast.db.audit_chain`, below every package that writes to it."""

from __future__ import annotations

from broadcast.db.audit_chain import (
    GENESIS,
    Entry,
    Verification,
    canonical,
    entries,
    entry_hash,
    export,
    head_t,
    log_t,
    note,
    record,
    verify,
    verify_file,
    verify_rows,
)

__all__ = ["GENESIS", "Entry", "Verification", "canonical", "entries", "entry_hash", "export", "head_t", "log_t",
           "note", "record", "verify", "verify_file", "verify_rows"]
