"""The process entry point (`batchcert`, `python -m batchcert`): signals first, then the command line.

SIGTERM and SIGHUP are made to behave as Ctrl-C before anything heavy is imported, and an interrupt at any phase —
even while the command line is still loading — ends with exit 130 (129 for SIGHUP) and one line, never a traceback
(README, "Exit codes").
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType

from batchcert.errors import STOP_SIGNALS, HangUp, exit_code_for_interrupt

MESSAGE = (
    "interrupted — nothing more is sent; `batchcert report RUN_DIR` shows a run's state and "
    "`batchcert rerun RUN_DIR` continues it\n"
)
_said: list[bool] = []


def _say(text: str) -> None:
    """Write to stderr; after a hangup the terminal is gone and a write fails — nothing to do about it then."""
    with contextlib.suppress(OSError):
        sys.stderr.write(text)
        sys.stderr.flush()


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """Outside a run's own handling (which takes over while requests are sent and reports written): say so once,
    and unwind as Ctrl-C does."""
    if not _said:
        _said.append(True)
        _say(MESSAGE)
    raise HangUp if signum == signal.SIGHUP else KeyboardInterrupt


def main() -> None:
    # batchcert does no linear algebra, but numpy (imported by pandas) starts one OpenBLAS thread per core, and those
    # threads spin while idle — CPU taken from the run (docs/scheduling.md, "CPU"). A user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    try:
        from batchcert.cli import main as run_command_line

        _tune_garbage_collector()
        run_command_line()
    except KeyboardInterrupt as interrupt:
        if not _said:
            _say(MESSAGE)
        _flush()
        # Every `finally` below has run. Exit now: an interrupt while the interpreter unwinds a SystemExit would make
        # it end by the signal (-2) instead of the documented 130.
        os._exit(exit_code_for_interrupt(interrupt))
    except SystemExit as done:
        # The command has finished: its journal is closed, its files written and renamed into place. Leave without
        # the interpreter's teardown of pandas, numpy and aiohttp (a tenth of a second or more of a short run's wall
        # clock, docs/scheduling.md "The bound").
        import logging

        logging.shutdown()
        _flush()
        code = done.code
        if isinstance(code, str):  # SystemExit("message") prints it, as the interpreter would
            _say(code + "\n")
        os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def _tune_garbage_collector() -> None:
    """A run holds tens of thousands of live objects (rows, journal state, aiohttp's per-request objects) and makes
    few reference cycles: with the interpreter's default thresholds (700, 10, 10) the cyclic collector walks them over
    and over, a fifth of a 30,000-row run's CPU (docs/scheduling.md, "CPU"). The modules imported so far live as long
    as the process, so they are moved out of its sight (`gc.freeze`), and it runs less often; reference counting
    still frees everything else as usual (https://docs.python.org/3/library/gc.html#gc.set_threshold)."""
    import gc

    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a terminal that hung up
            stream.flush()


if __name__ == "__main__":
    main()
