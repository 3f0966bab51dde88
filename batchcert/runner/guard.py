"""When a run stops sending on its own because changes are going wrong (README, "Canary and failure threshold"):
`FailureLimit` (`--max-failures N|P%`) and `FailureGuard`, which counts failed changes — `terminal`, reverted by the
service, or not served by the edge — and stops the run at the limit, as a batch engine stops a job past its failure
threshold; and `pick_canary` (`--canary N`), the rows sent, read back and probed before any other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from batchcert.model import Row

_LIMIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


@dataclass(frozen=True)
class FailureLimit:
    """How many failed changes stop a run: `count` of them, or `percent` of the rows it sends (at least one)."""

    count: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, text: str) -> FailureLimit:
        """`N` (a whole number of changes, at least 1) or `P%` (above 0, at most 100). Raises ValueError saying what
        is accepted."""
        found = _LIMIT.match(text)
        if found is not None and found.group(2):
            percent = float(found.group(1))
            if 0 < percent <= 100:
                return cls(percent=percent)
        elif found is not None and found.group(1).isdigit() and int(found.group(1)) >= 1:
            return cls(count=int(found.group(1)))
        raise ValueError(
            f"--max-failures {text!r}: give a number of failed changes (5) or a share of the rows sent (10%), "
            "at least 1 change or above 0%"
        )

    def threshold(self, rows: int) -> int:
        """The failed changes that stop a run sending `rows`."""
        if self.count is not None:
            return self.count
        return max(1, math.ceil((self.percent or 0) * rows / 100))

    def __str__(self) -> str:
        return f"{self.count}" if self.count is not None else f"{self.percent:g}%"


class FailureGuard:
    """Counts failed changes (`failed`) and calls `stop(reason)` once they reach the limit (None: never)."""

    def __init__(self, limit: FailureLimit | None, rows: int, stop: Callable[[str], None], rerun_command: str) -> None:
        self._limit = limit
        self._threshold = limit.threshold(rows) if limit is not None else None
        self._stop = stop
        self._rerun_command = rerun_command
        self.failures: list[str] = []

    def failed(self, row: Row, why: str) -> None:
        """Row `row`'s change failed (`why`: its outcome or what the edge served)."""
        self.failures.append(f"row {row.row_number} ({why})")
        if self._threshold is not None and len(self.failures) == self._threshold:
            shown = "; ".join(self.failures[:5]) + ("; …" if len(self.failures) > 5 else "")
            self._stop(
                f"stopped after {len(self.failures)} failed change(s) (--max-failures {self._limit}): {shown} — "
                f"nothing more was sent; fix the cause, then `{self._rerun_command}` sends the rest"
            )


def pick_canary(rows: Iterable[Row], size: int) -> list[Row]:
    """The first `size` rows, in mapping order, each on a listener of its own."""
    picked: dict[str, Row] = {}
    for row in rows:
        if len(picked) == size:
            break
        picked.setdefault(row.listener_id, row)
    return list(picked.values())
