"""The exception tree for run-level problems. Per-row failures are data (outcomes), never these.

Every class carries the process exit code the CLI maps it to (policy as data: `ExitCode`).
"""

from __future__ import annotations

import enum
import signal


class ExitCode(enum.IntEnum):
    """Every process exit code, in one table (README, "Exit codes"). `plan` answers like `terraform plan
    -detailed-exitcode` (0 nothing to change, 1 a problem) except that changes pending is 4, not 2: 2 is every
    command's "could not start" (a usage error included), and a script must tell the two apart."""

    #: every row succeeded or was unchanged (`plan`: nothing would change)
    OK = 0
    #: the run finished but some row did not (`plan`: a row is invalid, absent or unreadable, or plan could not run)
    ROWS_NOT_DONE = 1
    #: the run could not start: usage, unreadable mapping, missing column, credentials, an occupied run directory
    CANNOT_START = 2
    #: `plan` only: changes are pending
    CHANGES_PENDING = 4
    #: an unexpected error inside batchcert (a bug): one line on stderr, the journal intact
    INTERNAL = 3
    #: interrupted by Ctrl-C or SIGTERM
    INTERRUPTED = 130
    #: the terminal hung up (SIGHUP: an ssh session dropped without tmux), handled as SIGTERM is: 128 + 1
    HANGUP = 129


#: the signals that stop a run gracefully: stop dispatching, settle what is in flight, write the reports
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_code_for_signal(signum: int | None) -> ExitCode:
    """The exit code of a run a stop signal ended: HANGUP for SIGHUP (the shell's 128 + 1), else INTERRUPTED."""
    return ExitCode.HANGUP if signum == signal.SIGHUP else ExitCode.INTERRUPTED


class HangUp(KeyboardInterrupt):
    """SIGHUP outside a run's own handling: unwinds as Ctrl-C does, and the process exits with HANGUP."""


def exit_code_for_interrupt(exc: KeyboardInterrupt) -> ExitCode:
    return ExitCode.HANGUP if isinstance(exc, HangUp) else ExitCode.INTERRUPTED


class BatchcertError(Exception):
    """Base of every run-level problem. The message says what to do next."""

    exit_code: int = ExitCode.CANNOT_START


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


class ReportError(BatchcertError):
    """The reports cannot be written where they should go (read-only or full disk, permissions, a locked file)."""
