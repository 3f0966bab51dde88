"""The run directory: where a new one goes by default, the temporary files a killed write leaves in it, and the
warning when one is rerun somewhere other than where it was made (a copy)."""

from __future__ import annotations

import contextlib
import socket
from datetime import UTC, datetime
from pathlib import Path

from batchcert.journal import MARKER_NAME
from batchcert.workflow.rehearsal import world_temp_path


def default_run_dir(root: Path, mapping: Path) -> Path:
    """`reports/<UTC yyyymmddThhmmssZ>-<mapping stem>/`, with a numeric suffix if that exists already."""
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = root / f"{stamp}-{mapping.stem}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{mapping.stem}-{n}"
    return candidate


def remove_temps_of_killed_writes(run_dir: Path) -> None:
    """Remove the temporary files a killed write of run.json or of the rehearsal world left: only the process that
    holds the run directory writes them, so call it holding the lock (rerun) or when nobody holds it (report). The
    report files' own temps are `report.remove_stale_temps`'."""
    with contextlib.suppress(OSError):
        for stale in (*run_dir.glob(f".{MARKER_NAME}.*"), world_temp_path(run_dir)):
            stale.unlink(missing_ok=True)


def moved_run_warning(run_dir: Path, facts: dict[str, str]) -> tuple[str, ...]:
    """A run directory rerun on another machine or at another path than where it was made (a copy: its original may
    be rerun too, and each copy would send what the other already sent)."""
    host, path = facts.get("created_host", ""), facts.get("created_path", "")
    here, there = socket.gethostname(), str(run_dir.resolve())
    if (not host or host == here) and (not path or path == there):
        return ()
    return (
        f"this run directory was made at {path or '?'} on {host or '?'} and is rerun at {there} on {here} — if the "
        "original is rerun too, both send the same rows: rerun only one of them",
    )
