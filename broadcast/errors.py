"""One exception tree for everything a user can cause or fix.

    BroadcastError                 base; ``message`` is one line, ``hint`` names the fixing command
    ├── ConfigError                a setting is missing or invalid
    ├── NotFoundError              a group, member, opt-out, message ... does not exist
    ├── ConflictError              the object already exists, or the change would break a rule
    ├── InputError                 a file or value supplied by the user is unusable
    │   └── ImportFileError        a contact list cannot be read at all (rows are rejected, not raised)
    └── StateError                 the object is not in a state that allows the operation

The CLI maps every ``BroadcastError`` to one red line and exit code 1, once, in
``broadcast.cli.app``; anything else is a bug and shows a traceback.
"""

from __future__ import annotations


class BroadcastError(Exception):
    """Base class: a problem the user can understand and act on."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(BroadcastError):
    """A setting is missing or invalid."""


class NotFoundError(BroadcastError):
    """The named object does not exist."""


class ConflictError(BroadcastError):
    """The object already exists, or the change would break a rule."""


class InputError(BroadcastError):
    """A value or file given by the user cannot be used."""


class ImportFileError(InputError):
    """A contact-list file cannot be read at all."""


class StateError(BroadcastError):
    """The object's state does not allow this operation."""
