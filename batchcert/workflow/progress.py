"""How far a sending session is: its rows counted as they settle, told to the display at display speed."""

from __future__ import annotations

import time
from collections.abc import Callable

from batchcert.model import Outcome, Progress, Row

#: progress callback: called as rows settle, and at once when the run starts stopping
ProgressFn = Callable[[Progress], None]


class ProgressTracker:
    """Counts this session's rows as they settle (a row's identical duplicates with it, so the counts add up to
    `done`) and tells `on_progress` — at most every EVERY_S (no display redraws faster: the CLI's bar 10 times a
    second, its plain lines every 5 s), and always for the last row."""

    EVERY_S = 0.1

    def __init__(self, rows: list[Row], copies: dict[int, int], on_progress: ProgressFn) -> None:
        self._copies = copies
        self._total = sum(1 + copies.get(row.row_number, 0) for row in rows)
        self._done = 0
        self._counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self._on_progress = on_progress
        self._started_s = self._told_s = time.monotonic()

    def row_done(self, row: Row, outcome: Outcome) -> None:
        moved = 1 + self._copies.get(row.row_number, 0)
        self._done += moved
        self._counts[outcome] += moved
        if self._done >= self._total or time.monotonic() - self._told_s >= self.EVERY_S:
            self.tell()

    def tell(self, stopping: str = "") -> None:
        self._told_s = time.monotonic()
        elapsed_s = self._told_s - self._started_s
        self._on_progress(Progress(self._done, self._total, dict(self._counts), elapsed_s, stopping))
