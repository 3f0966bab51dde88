"""Claims: on one machine, one run at a time changes a given place.

The run directory's lock (batchcert.journal) keeps two processes out of one run directory, but two operators — or
one with two terminals — can start `run` on the same mapping with different `--out` (the default carries a
timestamp). Both would read every listener before either change lands and then race each other. So before sending,
a run (or rerun) claims what it changes: one file per run in a per-user state directory, holding a digest of each
(listener, domain) it may send — listener ids are the service's, unique whatever endpoint (the international site)
or credential (another profile of the same account) reaches them — and locked (flock) by the process for as long as
it runs. A new
run that would touch a place a live claim holds refuses — naming that run's directory, host, pid and start time —
unless the operator says `--force`. A claim whose process is gone (its lock is free) is stale and removed.

Across machines no file can help: the runner itself reads a domain again before resending it after a busy answer
it did not cause (batchcert.runner, README "Two operators").
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from batchcert.errors import BatchcertError

#: where claims live: $BATCHCERT_STATE_DIR, else $XDG_STATE_HOME/batchcert, else ~/.local/state/batchcert (the XDG
#: base directory specification's state home: https://specifications.freedesktop.org/basedir-spec/latest/)
STATE_DIR_ENV = "BATCHCERT_STATE_DIR"
_GUARD = "claims.lock"
#: hex digits of each place's digest kept in a claim: 64 bits, so two different places of 100,000-row runs collide
#: with a probability far below one in a million
_DIGEST_HEX = 16


class ClaimError(BatchcertError):
    """Another live run on this machine is changing some of the same places (exit 2 unless --force)."""


def state_dir() -> Path:
    """The per-user directory batchcert keeps its claims in."""
    given = os.environ.get(STATE_DIR_ENV)
    if given:
        return Path(given)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "batchcert"


def place_digests(places: Iterable[tuple[str, str]]) -> frozenset[str]:
    """A digest per (listener, domain) place (domains compare case-insensitively; a listener row's domain is "")."""
    return frozenset(
        hashlib.sha256(f"{listener}\n{domain.lower()}".encode()).hexdigest()[:_DIGEST_HEX]
        for listener, domain in places
    )


@dataclass(frozen=True)
class Claim:
    """A live run's claim as another run sees it."""

    run_dir: str
    host: str
    pid: int
    started_at: str
    places: frozenset[str]

    def describe(self) -> str:
        return f"run directory {self.run_dir} (host {self.host}, pid {self.pid}, started {self.started_at})"


@contextlib.contextmanager
def claim_places(run_dir: Path, places: frozenset[str], *, force: bool = False) -> Iterator[None]:
    """Hold a claim on `places` for the duration of the block. Raises ClaimError naming the other run when a live
    claim holds any of them (unless `force`: then the run goes on, and the overlap is the operator's to know)."""
    if not places:
        yield
        return
    try:
        folder = state_dir() / "claims"
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: no home directory to put it in
        raise ClaimError(
            f"cannot use batchcert's state directory for run claims: {exc} — set {STATE_DIR_ENV} to a directory "
            "you can write"
        ) from None
    mine = folder / f"{uuid.uuid4().hex}.json"
    fd: int | None = None
    try:
        with _guarded(folder):
            if not force:
                for other in _live_claims(folder):
                    shared = len(other.places & places)
                    if shared:
                        raise ClaimError(
                            f"another batchcert run on this machine is changing {shared} of the same place(s): "
                            f"{other.describe()} — wait until it has finished (or continue it with `batchcert rerun "
                            f"{other.run_dir}`), or pass --force if you know both must run"
                        )
            fd = _write_claim(mine, run_dir, places)
    except OSError as exc:
        mine.unlink(missing_ok=True)
        raise ClaimError(
            f"cannot write a run claim in {folder}: {exc} — set {STATE_DIR_ENV} to a directory you can write"
        ) from None
    try:
        yield
    finally:
        mine.unlink(missing_ok=True)
        if fd is not None:
            os.close(fd)


@contextlib.contextmanager
def _guarded(folder: Path) -> Iterator[None]:
    """One process at a time looks at the claims and adds its own (two runs starting together see each other)."""
    fd = os.open(folder / _GUARD, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_claim(path: Path, run_dir: Path, places: frozenset[str]) -> int:
    """Write and lock this run's claim; the lock is held (the descriptor kept open) until the run ends."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, _claim_record(run_dir, places))
    except OSError:
        os.close(fd)
        raise
    return fd


def _claim_record(run_dir: Path, places: frozenset[str]) -> bytes:
    record = {
        "run_dir": str(run_dir.resolve()),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "places": sorted(places),
    }
    return json.dumps(record).encode()


def _live_claims(folder: Path) -> Iterator[Claim]:
    """The claims whose process still holds them; stale ones (the process is gone) are removed."""
    for path in sorted(folder.glob("*.json")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: a live run
                data = json.loads(path.read_text(encoding="utf-8") or "{}")
                yield Claim(
                    str(data.get("run_dir", "?")),
                    str(data.get("host", "?")),
                    int(data.get("pid", 0)),
                    str(data.get("started_at", "?")),
                    frozenset(str(p) for p in data.get("places", [])),
                )
                continue
            path.unlink(missing_ok=True)  # nobody holds it: the run that wrote it is gone
        except (OSError, ValueError):
            continue  # unreadable: not a claim anyone can be told about
        finally:
            os.close(fd)
