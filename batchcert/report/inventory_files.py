"""The files of `batchcert inventory`: inventory.csv and inventory.xlsx (every place and the certificates it uses,
and the certificates by expiry with the number of places each is used), and the rotation mapping `inventory
--replace` writes (mapping.csv). `batchcert.inventory` reads the estate; this module writes what it found.

An inventory of several accounts (`write_account_inventory`, `write_account_rotation`) writes the same files with
the account's profile first on every line: `profile` in inventory.csv and on both sheets, `Profile` in mapping.csv
(the mapping column `batchcert run` sends each row's account with).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from batchcert.api.vocabulary import CERTIFICATE_TYPE_NAMES
from batchcert.errors import ReportError
from batchcert.journal import iso_utc
from batchcert.live.certificates import CertificateInfo
from batchcert.mapping import PROFILE
from batchcert.model import DEFAULT_CERTIFICATE, MappingLine, Place
from batchcert.report.files import INVENTORY_CSV_FILE, INVENTORY_XLSX_FILE, ROTATION_FILE, write_atomic, write_csv
from batchcert.report.tables import SWAP_PLACE_COLUMNS
from batchcert.report.workbook import write_tables

if TYPE_CHECKING:
    import pandas as pd

#: the first columns of inventory.csv, exactly these names in this order (README, "Rotate a certificate")
INVENTORY_COLUMNS = (
    "scope",
    "proxy_id",
    "listener_id",
    "domain",
    "certificate_id",
    "client_certificate_ids",
    "effective_certificate_id",
    "certificate_end_time",
    "days_to_expiry",
    "certificate_alias",
    "subject_cn",
    "proxy_name",
    "proxy_status",
    "group_id",
    "listener_name",
    "port",
    "status",
)
#: the columns of the mapping `inventory --replace` writes (a mapping `batchcert run` takes as it is), compare-and-swap:
#: `CertificateId` / `PolyClientCertificateIds` are what the place uses now (as the inventory read it), the New*
#: columns what it moves to — so a rotation never overwrites a place changed since the inventory
ROTATION_COLUMNS = (
    *SWAP_PLACE_COLUMNS,
    "NewCertificateId",
    "NewPolyClientCertificateIds",
)
#: inventory.xlsx's Certificates sheet
CERTIFICATE_COLUMNS = ("certificate_id", "alias", "type", "subject_cn", "end_time", "days_to_expiry", "places")
#: the first column of inventory.csv and of both sheets when the inventory reads several accounts: the profile of the
#: account the line is in (a certificate id is its account's own, so the Certificates sheet says it too)
PROFILE_COLUMN = "profile"
SECONDS_PER_DAY = 86400
#: what inventory.csv shows of the certificate a place serves (`effective_certificate_id`): certificate column →
#: inventory column
_SERVED_COLUMNS = {
    "end_time": "certificate_end_time",
    "days_to_expiry": "days_to_expiry",
    "alias": "certificate_alias",
    "subject_cn": "subject_cn",
}


class UnsearchedConnection(Protocol):
    """What the inventory could not search (`inventory.NotSearched`): a proxy or group (`scope` "proxy" or "group")
    whose listeners — or, with `listener_id`, the domains of one listener on it — could not be read."""

    @property
    def scope(self) -> str: ...
    @property
    def proxy_id(self) -> str: ...
    @property
    def group_id(self) -> str: ...
    @property
    def listener_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def reason(self) -> str: ...


class AccountEstate(Protocol):
    """One account's estate as the inventory read it (`inventory.Estate`): its places, its certificates by id, and
    what could not be searched."""

    @property
    def places(self) -> Sequence[Place]: ...
    @property
    def certificates(self) -> dict[str, CertificateInfo]: ...
    @property
    def not_searched(self) -> Sequence[UnsearchedConnection]: ...


def _days_to_expiry(certificate: CertificateInfo | None, now_s: float) -> int | str:
    """Whole days from `now_s` to the certificate's end ("" when it is not known)."""
    if certificate is None or not certificate.end_time_s:
        return ""
    return int((certificate.end_time_s - now_s) // SECONDS_PER_DAY)


def _unsearched_line(hole: UnsearchedConnection) -> list[Any]:
    line: dict[str, Any] = dict.fromkeys(INVENTORY_COLUMNS, "")
    line |= {
        "scope": hole.scope,
        "proxy_id": hole.proxy_id,
        "listener_id": hole.listener_id,
        "proxy_name": hole.name,
        "proxy_status": hole.status,
        "group_id": hole.group_id,
        "status": hole.reason,
    }
    return list(line.values())


def _certificate_frame(certificates: dict[str, CertificateInfo], now_s: float) -> pd.DataFrame:
    """One line per certificate of the account: CERTIFICATE_COLUMNS but `places`, then `expiry` (its end, +inf when
    it has none: the sort key)."""
    import pandas as pd

    return pd.DataFrame(
        [
            (
                c.certificate_id,
                c.alias,
                CERTIFICATE_TYPE_NAMES.get(c.type, str(c.type)),
                c.subject_cn,
                iso_utc(c.end_time_s, "seconds"),
                _days_to_expiry(c, now_s),
                float(c.end_time_s or "inf"),
            )
            for c in certificates.values()
        ],
        columns=[*CERTIFICATE_COLUMNS[:-1], "expiry"],
        dtype=object,
    ).astype({"expiry": float})


def _place_table(places: Sequence[Place], certificates: pd.DataFrame) -> list[list[Any]]:
    """inventory.csv's line for each place (INVENTORY_COLUMNS), in order: the place joined with the certificate it
    serves (`effective_certificate_id`: its end, days to expiry, alias and SubjectCN, blank when not among the
    account's)."""
    import pandas as pd

    own = [c for c in INVENTORY_COLUMNS if c not in _SERVED_COLUMNS.values()]
    frame = pd.DataFrame(
        [
            (
                place.scope,
                place.proxy_id,
                place.listener_id,
                place.domain,
                place.certificate_id,
                ";".join(place.client_certificate_ids),
                place.effective_certificate_id,
                place.proxy_name,
                place.proxy_status,
                place.group_id,
                place.listener_name,
                "" if place.port is None else place.port,
                place.status,
            )
            for place in places
        ],
        columns=own,
        dtype=object,
    )
    served = certificates[["certificate_id", *_SERVED_COLUMNS]].rename(
        columns={"certificate_id": "effective_certificate_id", **_SERVED_COLUMNS}
    )
    joined = frame.merge(served, how="left", on="effective_certificate_id")[list(INVENTORY_COLUMNS)].fillna("")
    return [list(line) for line in joined.itertuples(index=False, name=None)]


def _certificate_table(places: Sequence[Place], certificates: pd.DataFrame) -> list[list[Any]]:
    """The Certificates sheet (CERTIFICATE_COLUMNS): every certificate, soonest end first (those without one last,
    then by id), joined with the number of places that use it — as a place's server certificate (`default`
    resolved) or among its client CAs."""
    table = _certificates_by_expiry(places, certificates)
    return [list(line) for line in table[list(CERTIFICATE_COLUMNS)].itertuples(index=False, name=None)]


def _certificates_by_expiry(places: Sequence[Place], certificates: pd.DataFrame) -> pd.DataFrame:
    """`_certificate_table`'s lines as a frame, sorted, with the `expiry` sort key kept."""
    import pandas as pd

    uses = pd.DataFrame(
        [
            (n, cert_id)
            for n, place in enumerate(places)
            for cert_id in {place.effective_certificate_id, *place.client_certificate_ids} - {"", DEFAULT_CERTIFICATE}
        ],
        columns=["place", "certificate_id"],
        dtype=object,
    )
    places_of = uses.groupby("certificate_id").size().rename("places")
    table = certificates.merge(places_of, how="left", left_on="certificate_id", right_index=True)
    table["places"] = table["places"].fillna(0).astype(int)
    return table.sort_values(["expiry", "certificate_id"])


def write_inventory(
    out_dir: Path,
    places: Sequence[Place],
    certificates: dict[str, CertificateInfo],
    now_s: float,
    not_searched: Sequence[UnsearchedConnection] = (),
) -> tuple[Path, Path]:
    """Write `inventory.csv` (INVENTORY_COLUMNS, one line per HTTPS listener and per domain) and `inventory.xlsx`
    (the same, plus the certificates by expiry with the number of places each is used). First come the lines of
    what could not be searched — `not_searched` (`inventory.Estate.not_searched`): one per connection, `scope` proxy
    or group, its ids, its name and status (`proxy_name`, `proxy_status`), and in `status` the refusal's code and
    message. Raises ReportError naming the path when they cannot be written."""
    by_id = _certificate_frame(certificates, now_s)
    table = [_unsearched_line(hole) for hole in not_searched] + _place_table(places, by_id)
    return _write_inventory_files(
        out_dir, (INVENTORY_COLUMNS, table), (CERTIFICATE_COLUMNS, _certificate_table(places, by_id))
    )


def write_account_inventory(out_dir: Path, estates: Mapping[str, AccountEstate], now_s: float) -> tuple[Path, Path]:
    """`write_inventory` for several accounts (by profile, in the order they were given), into one inventory.csv and
    one inventory.xlsx with PROFILE_COLUMN first on every line: the lines of what could not be searched, account by
    account, then the places, account by account — each place joined with its own account's certificates. The
    Certificates sheet holds every account's certificates, soonest end first (then in the accounts' order, then
    by id), each with the number of places of its account that use it. Raises ReportError as `write_inventory`."""
    frames = {profile: _certificate_frame(estate.certificates, now_s) for profile, estate in estates.items()}
    holes = [[profile, *_unsearched_line(hole)] for profile, estate in estates.items() for hole in estate.not_searched]
    places = [
        [profile, *line] for profile, estate in estates.items() for line in _place_table(estate.places, frames[profile])
    ]
    certificates: list[tuple[tuple[float, int, str], list[Any]]] = []
    for n, (profile, estate) in enumerate(estates.items()):
        table = _certificates_by_expiry(estate.places, frames[profile])
        certificates += [
            ((expiry, n, line[0]), [profile, *line])
            for *line, expiry in table[[*CERTIFICATE_COLUMNS, "expiry"]].itertuples(index=False, name=None)
        ]
    certificates.sort(key=lambda ranked: ranked[0])
    return _write_inventory_files(
        out_dir,
        ((PROFILE_COLUMN, *INVENTORY_COLUMNS), holes + places),
        ((PROFILE_COLUMN, *CERTIFICATE_COLUMNS), [line for _, line in certificates]),
    )


def _write_inventory_files(
    out_dir: Path,
    inventory: tuple[Sequence[str], list[list[Any]]],
    certificates: tuple[Sequence[str], list[list[Any]]],
) -> tuple[Path, Path]:
    """inventory.csv (the `inventory` table) and inventory.xlsx (it and the `certificates` table), each a
    (columns, lines) pair."""
    csv_path, xlsx_path = out_dir / INVENTORY_CSV_FILE, out_dir / INVENTORY_XLSX_FILE
    sheets = {"Inventory": inventory, "Certificates": certificates}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_csv(csv_path, *inventory)
        write_atomic(xlsx_path, lambda tmp: write_tables(tmp, sheets))
    except OSError as exc:
        raise ReportError(
            f"cannot write the inventory to {exc.filename or out_dir}: {exc.strerror or exc} — choose another --out"
        ) from None
    return csv_path, xlsx_path


def write_rotation(out_dir: Path, lines: Sequence[MappingLine]) -> Path:
    """Write `mapping.csv` (ROTATION_COLUMNS, compare-and-swap) for `batchcert run`."""
    return _write_rotation_file(out_dir, ROTATION_COLUMNS, [_rotation_line(ln) for ln in lines])


def write_account_rotation(out_dir: Path, rotations: Mapping[str, Sequence[MappingLine]]) -> Path:
    """`write_rotation` for several accounts (by profile, in order): the mapping's `Profile` column first, so that
    `batchcert run` sends each line with its account's credential."""
    rows = [[profile, *_rotation_line(ln)] for profile, lines in rotations.items() for ln in lines]
    return _write_rotation_file(out_dir, (PROFILE, *ROTATION_COLUMNS), rows)


def _rotation_line(ln: MappingLine) -> list[Any]:
    """mapping.csv's cells for one line (ROTATION_COLUMNS)."""
    return [
        ln.scope,
        ln.proxy_id,
        ln.listener_id,
        ln.domain,
        ln.current_certificate_id,
        ";".join(ln.current_client_certificate_ids),
        ln.certificate_id,
        ";".join(ln.poly_client_certificate_ids),
    ]


def _write_rotation_file(out_dir: Path, columns: Sequence[str], rows: list[list[Any]]) -> Path:
    path = out_dir / ROTATION_FILE
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_csv(path, columns, rows)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc} — choose another --out") from None
    return path
