"""What the operator asked for on the command line: one frozen request per command that takes more than a path
(the CLI builds them from its flags; settings left None are resolved by `settings.resolve_settings`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batchcert.model import MappingSource
from batchcert.runner import RunnerConfig
from batchcert.settings import SettingFlags


@dataclass(frozen=True)
class PlanRequest:
    """`batchcert plan MAPPING`: the pre-flight read alone."""

    mapping: Path
    out: Path | None = None
    settings: SettingFlags = field(default_factory=SettingFlags)
    profile: str | None = None
    sheet: str | None = None
    rehearsal: bool = False
    world: Path | None = None
    reports_root: Path = Path("reports")
    encoding: str | None = None
    include_hidden_rows: bool = False
    ignore_columns: tuple[str, ...] = ()

    @property
    def source(self) -> MappingSource:
        return MappingSource(self.mapping, self.sheet, self.encoding, self.include_hidden_rows, self.ignore_columns)


@dataclass(frozen=True)
class RunRequest(PlanRequest):
    """`batchcert run MAPPING`: what `plan` reads (the mapping, the target), and how to send."""

    runner: RunnerConfig = field(default_factory=RunnerConfig)
    #: run although another live run on this machine claims some of the same places (batchcert.claims)
    force: bool = False


@dataclass(frozen=True)
class RerunRequest:
    """`batchcert rerun RUN_DIR`: settings left None default to what the run recorded (never the secret)."""

    run_dir: Path
    include_terminal: bool = False
    settings: SettingFlags = field(default_factory=SettingFlags)
    profile: str | None = None
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    #: rerun although another live run on this machine claims some of the same places (batchcert.claims)
    force: bool = False
    #: accept a journal that cannot prove it holds every change sent, and rebuild what was sent from the live state
    reread: bool = False


@dataclass(frozen=True)
class InventoryRequest:
    """`batchcert inventory`: read the estate; with `replace` (OLD=NEW texts) also write the rotation mapping. With
    two or more `profiles` it reads every one of those accounts into one inventory (none: the default credentials)."""

    out: Path | None = None
    settings: SettingFlags = field(default_factory=SettingFlags)
    profiles: tuple[str, ...] = ()
    rehearsal: bool = False
    world: Path | None = None
    reports_root: Path = Path("reports")
    replace: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProbeRequest:
    """`batchcert probe SOURCE`: what the edge serves for every domain of a mapping, a run directory or an
    inventory.csv, probed again for `probe_wait_s` while it serves another certificate."""

    source: Path
    out: Path | None = None
    settings: SettingFlags = field(default_factory=SettingFlags)
    profile: str | None = None
    rehearsal: bool = False
    world: Path | None = None
    reports_root: Path = Path("reports")
    probe_wait_s: float = 0.0
