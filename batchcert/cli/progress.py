"""How far a command is, on stderr: a run's progress (a rich bar on a terminal, a plain line every few seconds off
one) and the inventory's reading steps."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from batchcert.cli.render import duration_text, err

if TYPE_CHECKING:
    from datetime import datetime

    from batchcert.model import Progress


def progress_line(progress: Progress, now: datetime) -> str:
    """The off-terminal progress line: UTC time, done/total, rate, ETA, and counts that add up to done."""
    from batchcert.model import Outcome

    eta = "—" if progress.eta_s is None else duration_text(progress.eta_s)
    counts = " · ".join(f"{o.value} {progress.counts[o]}" for o in Outcome if progress.counts.get(o))
    share = 100 * progress.done / progress.total if progress.total else 100.0
    return (
        f"{now.strftime('%Y-%m-%dT%H:%M:%SZ')}  {progress.done}/{progress.total} rows ({share:.1f}%)  "
        f"{progress.rows_per_s:.1f} rows/s  ETA {eta}" + (f"  {counts}" if counts else "")
    )


class ProgressDisplay:
    """A rich progress bar on a terminal; off a terminal a plain line every PLAIN_EVERY_S seconds (and at the end).
    A stopping run is announced at once, in both."""

    PLAIN_EVERY_S = 5.0

    def __init__(self) -> None:
        self.tty = err.is_terminal
        self._last = 0.0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressDisplay:
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
                console=err,
                transient=False,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            with contextlib.suppress(OSError):  # a terminal that hung up (SIGHUP): the run's reports still matter
                self._bar.__exit__(None, None, None)

    def update(self, progress: Progress) -> None:
        """Called as rows settle. A terminal that hung up (SIGHUP) refuses writes: the run goes on to its reports."""
        with contextlib.suppress(OSError):
            self._draw(progress)

    def _draw(self, progress: Progress) -> None:
        """Redraw at most 10 times a second (terminal) or every PLAIN_EVERY_S (plain); a stop is announced at once."""
        from datetime import UTC, datetime

        if progress.stopping:
            err.print(f"[bold yellow]{progress.stopping}[/]", highlight=False)
        now = time.monotonic()
        due = now - self._last >= (0.1 if self._bar is not None else self.PLAIN_EVERY_S)
        if not (due or progress.done >= progress.total):
            return
        self._last = now
        if self._bar is None:
            err.print(progress_line(progress, datetime.now(tz=UTC)), highlight=False, markup=False)
            return
        text = "  ".join(f"{o.value} {n}" for o, n in progress.counts.items() if n)
        rate = f"{progress.rows_per_s:.1f} rows/s"
        if self._task is None:
            self._task = self._bar.add_task(text, total=progress.total, rate=rate)
        self._bar.update(self._task, completed=progress.done, description=text, rate=rate)


def reading_steps() -> Callable[[str, int, int], None]:
    """The inventory's `on_step`: a line every 2 s and at the end of each phase: what is read, how far."""
    shown = {"at": 0.0}

    def step(what: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - shown["at"] >= 2.0:
            shown["at"] = now
            err.print(f"reading {what}: {done}/{total}", highlight=False, markup=False)

    return step
