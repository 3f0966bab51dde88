"""`intents.jsonl`: an append-only copy of every change's intent (attempt id, row, session, action, when, the state
read before it), written before the request leaves and fsynced with the journal's commit (`db.Store.commit`).

A journal that lost its tail (a truncated `-wal`) gets those attempts back from here (`recovery.recover`), so no
row this run changed can read as "already at the target before the run".
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

INTENTS_NAME = "intents.jsonl"


@dataclass(frozen=True)
class Intent:
    """One line of INTENTS_NAME: a change about to be sent."""

    id: int
    row: int
    session: int
    action: str
    sent_at: float
    #: the row's (certificate id, client ids) before any change, when it was read
    previous: tuple[str, tuple[str, ...]] | None


class IntentLog:
    """The run's INTENTS_NAME, opened for appending at the first intent."""

    def __init__(self, run_dir: Path) -> None:
        self._path = run_dir / INTENTS_NAME
        self._fd: int | None = None
        #: True while a line written is not yet fsynced
        self.unsynced = False

    def append(self, intent: Intent) -> None:
        """Write one intent's line; it is on disk once `sync` ran. Raises OSError as the disk refuses it."""
        line = {
            "id": intent.id,
            "row": intent.row,
            "session": intent.session,
            "action": intent.action,
            "sent_at": intent.sent_at,
            "previous": [intent.previous[0], list(intent.previous[1])] if intent.previous else None,
        }
        if self._fd is None:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(self._fd, (json.dumps(line) + "\n").encode())
        self.unsynced = True

    def sync(self) -> None:
        """fsync the lines written since the last sync, if any."""
        if self.unsynced and self._fd is not None:
            os.fsync(self._fd)
            self.unsynced = False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_intents(run_dir: Path, skip: frozenset[int]) -> Iterator[Intent]:
    """The intents INTENTS_NAME holds whose attempt ids are not in `skip` (nor yielded before: each id once), in
    writing order; none when the file is absent. A line without a readable id and row — a torn last line: the
    process died writing it, so it was never sent — is skipped."""
    path = run_dir / INTENTS_NAME
    if not path.is_file():
        return
    seen = set(skip)
    with path.open(encoding="utf-8") as fh:
        for text in fh:
            try:
                intent = json.loads(text)
                attempt_id, row_number = int(intent["id"]), int(intent["row"])
            except (ValueError, KeyError, TypeError):
                continue
            if attempt_id in seen:
                continue
            previous = intent.get("previous")
            yield Intent(
                attempt_id,
                row_number,
                int(intent.get("session") or 0),
                str(intent.get("action", "")),
                float(intent.get("sent_at") or 0),
                (str(previous[0]), tuple(str(c) for c in previous[1])) if previous else None,
            )
            seen.add(attempt_id)


def count_intents(run_dir: Path) -> int:
    """Changes INTENTS_NAME records as sent (0 when it is absent or unreadable)."""
    try:
        with (run_dir / INTENTS_NAME).open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return 0
