"""The places an inventory asks to be probed (`batchcert probe inventory.csv`): the file `batchcert inventory` wrote
(`batchcert.report.inventory_files`), recognised by its `effective_certificate_id` column. Each domain line is a
place whose edge should serve its effective certificate (the listener's own where the domain is on `default`), read
with its line's `profile` when the inventory covers several accounts; listener lines have no domain of their own,
and lines of connections that could not be searched have no place.
"""

from __future__ import annotations

import csv
from pathlib import Path

from batchcert.errors import MappingError
from batchcert.model import ProbeTarget

#: the column only inventory.csv has (a mapping never does)
INVENTORY_MARKER = "effective_certificate_id"
_NEEDED = ("scope", "listener_id", "domain", INVENTORY_MARKER)


def is_inventory(path: Path) -> bool:
    """True when `path` is a CSV whose header names the inventory's `effective_certificate_id`."""
    if path.suffix.lower() != ".csv":
        return False
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False
    return INVENTORY_MARKER in header


def read_inventory_targets(path: Path) -> list[ProbeTarget]:
    """Every domain place of an inventory.csv, numbered by its line in the file. Raises MappingError when the file
    cannot be read or lacks a column the probe needs."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            lines = list(csv.DictReader(fh))
            header = lines[0].keys() if lines else set()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MappingError(
            f"cannot read {path}: {exc} — give an inventory.csv that `batchcert inventory` wrote"
        ) from None
    missing = [name for name in _NEEDED if lines and name not in header]
    if missing:
        raise MappingError(
            f"{path} lacks the column(s) {', '.join(missing)} of an inventory.csv — run `batchcert inventory` again "
            "and probe the inventory.csv it writes"
        )
    return [
        ProbeTarget(
            n,
            line["listener_id"],
            line["domain"],
            line[INVENTORY_MARKER] or line.get("certificate_id", ""),
            line.get("profile") or "",  # an inventory of several accounts (`inventory --profile a --profile b`)
        )
        for n, line in enumerate(lines, start=2)
        if line["scope"] == "domain" and line["domain"] and line["listener_id"]
    ]
