"""The exception tree for run-level problems. Per-row failures are data (outcomes), never these.

Every class carries the process exit code the CLI maps it to (policy as data: `EXIT_CODES`).
"""

from __future__ import annotations

#: Process exit codes (README, "Exit codes"): 0 every row succeeded or was unchanged; 1 finished with some row not done;
#: 2 could not start; 130 interrupted; 3 an internal error (a bug).
EXIT_OK = 0
EXIT_ROWS_NOT_DONE = 1
EXIT_CANNOT_START = 2
EXIT_INTERRUPTED = 130
#: an unexpected error inside batchcert (a bug): one line on stderr, the journal intact
EXIT_INTERNAL = 3


class BatchcertError(Exception):
    """Base of every run-level problem. The message says what to do next."""

    exit_code = EXIT_CANNOT_START


class MappingError(BatchcertError):
    """The mapping cannot be read at all, or lacks a required column."""


class CredentialsError(BatchcertError):
    """No usable credentials were found."""


class SettingsError(BatchcertError):
    """A setting is out of range or inconsistent (an http endpoint that is not loopback, say)."""


class JournalError(BatchcertError):
    """The run directory's journal is missing, locked by another process, or from another mapping."""


class WorldError(BatchcertError):
    """An emulator world file does not follow the world contract."""
