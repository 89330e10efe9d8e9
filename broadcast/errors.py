"""One exception tree for everything a user can cause or fix.

    BroadcastError                 base; ``message`` is one line, ``hint`` names the fixing command
    ├── ConfigError                a setting is missing or invalid
    │   └── CalendarGapError       the working calendar has no data for a year a schedule reaches
    ├── NotFoundError              a group, member, opt-out, message ... does not exist
    ├── ConflictError              the object already exists, or the change would break a rule
    ├── InputError                 a file or value supplied by the user is unusable
    │   └── ImportFileError        a contact list cannot be read at all (rows are rejected, not raised)
    └── StateError                 the object is not in a state that allows the operation

Every class carries the ``exit_code`` the CLI ends with; the CLI maps a ``BroadcastError`` to one
red line and that code, once, in ``broadcast.cli.app``; anything else is a bug and shows a
traceback. ``ExitCode`` is the whole list of codes (the README's table mirrors it).
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    """How the ``broadcast`` command ends."""

    OK = 0
    ERROR = 1  # an error the user can fix, a check that failed, or a confirmation answered "no"
    USAGE = 2  # unknown command or option, missing or invalid argument (click's own code)
    ATTENTION = 3  # a send did what it could, but a message paused or deliveries are held in doubt


class BroadcastError(Exception):
    """Base class: a problem the user can understand and act on."""

    exit_code: ClassVar[ExitCode] = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(BroadcastError):
    """A setting is missing or invalid."""


class CalendarGapError(ConfigError):
    """The working calendar (chinesecalendar plus BROADCAST_CALENDAR_FILE) has no data for a year
    that is needed; ``year`` names it. Never guessed: the office adds the year's arrangement."""

    def __init__(self, message: str, year: int, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.year = year


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
