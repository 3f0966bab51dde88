"""How batchcert writes a file: whole or not at all, CSV cells a spreadsheet cannot evaluate, and never over a file
the user changed.

- Atomic writes (`staged_files`, `write_atomic`): each file is written under a temporary name beside its target
  (`.NAME.<pid>.<random>`) and renamed into place, so a reader sees the old file or the new one, never half of one.
  `remove_stale_temps` removes what a killed write left.
- Safe CSV (`open_csv`, `write_csv`): UTF-8 with a BOM, and every text cell starting with `=`, `+`, `-`, `@`, tab or
  CR gets a leading `'` (docs/gaap-api.md, "Spreadsheet safety"; OWASP CSV injection).
  `batchcert.mapping.cells.restore_cell` strips the `'` again when a report is read back as a mapping.
- The user's files (`Manifest`): MANIFEST_NAME records the sha256 of every report file batchcert wrote in a
  directory. A file that is there and is not what batchcert recorded (the user edited it, or an older batchcert wrote
  it without a record) is never replaced: the new one goes beside it as `failed-2.csv` (the next free number).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

from batchcert.mapping import FORMULA_PREFIXES, file_sha256

#: UTF-8 with a BOM: Excel on Windows reads it as UTF-8 (without, Chinese cells show as mojibake); every reader of
#: batchcert's files accepts it
CSV_ENCODING = "utf-8-sig"
#: what CSV_ENCODING puts before the text
BOM = "\ufeff"
#: every file `write_reports` writes, in the order `Reports.files` lists them
REPORT_FILES = ("report.csv", "report.xlsx", "summary.md", "summary.json", "failed.csv", "rollback.csv")
#: the sha256 of every report file batchcert wrote in a directory (`Manifest`)
MANIFEST_NAME = "reports.sha256.json"
#: the tables written whole by one command: `plan`, `inventory` and `inventory --replace`
PLAN_FILE = "plan.csv"
PROBE_FILE = "probe.csv"
INVENTORY_CSV_FILE = "inventory.csv"
INVENTORY_XLSX_FILE = "inventory.xlsx"
ROTATION_FILE = "mapping.csv"
#: a temporary file of an earlier batchcert (no pid in its name) older than this is a killed write's
STALE_TEMP_S = 600.0

K = TypeVar("K")


# ------------------------------------------------------------------------------------------------ atomic writes
def temp_beside(path: Path) -> Path:
    """A new hidden file beside `path` (`.failed.csv.<pid>.<random>`): the pid tells a later run whether the process
    that was writing it is gone (`remove_stale_temps`)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.")
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def staged_files(targets: Mapping[K, Path]) -> Iterator[dict[K, Path]]:
    """A temporary file beside each of `targets` (same keys), to be written and then renamed into place with
    `os.replace` (atomic within a filesystem); whatever was not renamed is removed on the way out."""
    temps: dict[K, Path] = {}
    try:
        for key, target in targets.items():
            temps[key] = temp_beside(target)
        yield temps
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """`write` a temporary file beside `path`, then rename it to `path`: a reader never sees half a file."""
    with staged_files({path: path}) as temps:
        write(temps[path])
        os.replace(temps[path], path)


# ----------------------------------------------------------------------------------------------------- safe CSV
class SafeCsv:
    """A CSV writer that neutralizes every formula-like text cell and writes None as an empty cell."""

    def __init__(self, fh: IO[str]) -> None:
        self._out = csv.writer(fh)

    def write(self, cells: Iterable[Any]) -> None:
        # a text cell a spreadsheet would evaluate gets `'` before it; written out, not a function per cell: this runs
        # for every cell of every report line
        self._out.writerow(
            [
                ("'" + v if v.startswith(FORMULA_PREFIXES) else v) if isinstance(v, str) else ("" if v is None else v)
                for v in cells
            ]
        )

    def write_all(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.write(row)


@contextlib.contextmanager
def open_csv(path: Path) -> Iterator[SafeCsv]:
    """`path` opened for a CSV table in CSV_ENCODING (written as it is: write a temporary file, see `staged_files`)."""
    # the same bytes as CSV_ENCODING: the BOM, then UTF-8 — which Python encodes in C, where the utf-8-sig codec's
    # encoder is Python code called for every line written
    with path.open("w", newline="", encoding="utf-8") as fh:
        fh.write(BOM)
        yield SafeCsv(fh)


def write_csv(path: Path, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    """Write the table `header` + `rows` to `path` atomically."""

    def write(target: Path) -> None:
        with open_csv(target) as out:
            out.write(header)
            out.write_all(rows)

    write_atomic(path, write)


# ---------------------------------------------------------------------------------------------- the user's files
def numbered(name: str, n: int) -> str:
    """`failed.csv`, `failed-2.csv`, `failed-3.csv`, …"""
    if n == 1:
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}-{n}.{suffix}" if dot else f"{name}-{n}"


class Manifest:
    """MANIFEST_NAME in a report directory: the sha256 of each report file batchcert wrote there. A file is batchcert's
    to replace only when it holds exactly what the manifest records; anything else — edited by hand, written by an
    older batchcert that kept no record, a manifest that cannot be read — is the user's and is kept."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / MANIFEST_NAME
        self.files: dict[str, str] = {}
        #: what a write that was interrupted between the manifest and the renames may have left (either is ours)
        self.replacing: dict[str, str] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # none, or unreadable: nothing here is known to be batchcert's, so nothing is replaced
        if isinstance(data, dict):
            for key, into in (("files", self.files), ("replacing", self.replacing)):
                found = data.get(key)
                if isinstance(found, dict):
                    into.update({str(k): str(v) for k, v in found.items()})

    def is_ours(self, path: Path) -> bool:
        """True when `path` is free, or holds exactly what batchcert recorded writing there."""
        try:
            digest = file_sha256(path)
        except FileNotFoundError:
            return not path.is_symlink()
        except OSError:
            return False  # a directory, an unreadable file: not ours to replace
        return digest in (self.files.get(path.name), self.replacing.get(path.name))

    def choose(self, name: str) -> tuple[Path, list[Path]]:
        """Where the report file `name` goes: `name` itself when it is free or batchcert's, else the first
        `stem-N.suffix` that is; and the user's files passed over."""
        passed: list[Path] = []
        for n in itertools.count(1):
            candidate = self.directory / numbered(name, n)
            if self.is_ours(candidate):
                return candidate, passed
            passed.append(candidate)
        raise AssertionError("unreachable")  # pragma: no cover

    def write(self, written: dict[str, str], replacing: bool) -> None:
        """Record `written` (file name → sha256) atomically: with `replacing`, before the files are renamed into
        place (the old digests stay valid until the files are there); else as the final record. Entries of files
        no longer there are dropped."""
        kept = {name: digest for name, digest in self.files.items() if (self.directory / name).exists()}
        if replacing:
            data = {"format": 1, "files": kept, "replacing": written}
        else:
            self.files = {**kept, **written}
            data = {"format": 1, "files": self.files}
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        write_atomic(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------------------------------------- stale temps
def _temp_pattern(names: Iterable[str]) -> re.Pattern[str]:
    """`.NAME.<pid>.<random>` or an earlier batchcert's `.NAME.<random>` for each name, numbered variants included
    (`.failed-2.csv.123.abcd1234`)."""
    alternatives = []
    for name in names:
        stem, dot, suffix = name.partition(".")
        alternatives.append(re.escape(stem) + r"(?:-\d+)?" + (re.escape(dot + suffix) if dot else ""))
    # mkstemp's random part: 8 of [a-z0-9_] (CPython's tempfile._RandomNameSequence) — so `.failed.csv.bak`, a
    # user's own backup, never matches
    return re.compile(r"\.(?:" + "|".join(alternatives) + r")\.(?:(?P<pid>\d+)\.)?[a-z0-9_]{8}")


_TEMP_NAMES = _temp_pattern(
    (*REPORT_FILES, MANIFEST_NAME, INVENTORY_CSV_FILE, INVENTORY_XLSX_FILE, ROTATION_FILE, PLAN_FILE)
)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove the temporary files a killed write of a report left in `directory`: those whose process is gone, and
    pid-less ones (an earlier batchcert's) older than STALE_TEMP_S. A write still going on (its process alive, a
    `report` beside a live run) is left alone. Returns what was removed."""
    removed = []
    for path in directory.iterdir():
        found = _TEMP_NAMES.fullmatch(path.name)
        if found is None:
            continue
        if found["pid"] is not None:
            if _process_alive(int(found["pid"])):
                continue
        else:
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime < STALE_TEMP_S:
                    continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed
