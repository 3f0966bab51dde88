"""The emulator world a rehearsal sends to: loaded from a world file or built from the mapping's rows; for a rerun,
continued from the state the last session left (saved in the run directory, without its credential); and the random
credential a rehearsal signs with. The emulator module is imported only when a rehearsal needs it."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from batchcert.errors import SettingsError
from batchcert.report import REHEARSAL_WORLD_NAME

if TYPE_CHECKING:
    from batchcert import emulator
    from batchcert.journal import Journal
    from batchcert.model import Mapping


def rehearsal_world(world_path: Path | None, mapping: Mapping) -> emulator.World:
    """The given world file, or one in which every valid row of the mapping would succeed."""
    from batchcert import emulator

    if world_path is not None:
        return emulator.load_world(world_path)
    return emulator.world_for_rows(mapping.valid_rows(), credentials=_fresh_credentials())


def estate_world(world_path: Path | None) -> emulator.World:
    """The world an inventory's or a probe's rehearsal reads: the given file — there are no rows to build one
    from that would say what is deployed."""
    from batchcert import emulator

    if world_path is None:
        raise SettingsError("a rehearsal of inventory or probe needs the estate to read: pass --world FILE")
    return emulator.load_world(world_path)


def continued_world(journal: Journal, facts: dict[str, str]) -> emulator.World:
    """The world a rehearsal's rerun continues in: the state the last session left, else the run's world file,
    else one built from the rows."""
    from batchcert import emulator

    saved = journal.run_dir / REHEARSAL_WORLD_NAME
    if saved.is_file():
        world = emulator.load_world(saved)
        world.credentials = _fresh_credentials()
        return world
    if facts.get("world"):
        return emulator.load_world(Path(facts["world"]))
    return emulator.world_for_rows(journal.rows(), credentials=_fresh_credentials())


def save_rehearsal_world(run_dir: Path, world: emulator.World) -> None:
    """Write the state a rehearsal session left into the run directory (its rerun continues there, its rollback
    runs there), through a temporary file renamed into place."""
    state = world.to_dict()
    state.pop("credentials", None)  # never a secret in the run directory, not even an emulator's
    tmp = world_temp_path(run_dir)
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    tmp.replace(run_dir / REHEARSAL_WORLD_NAME)


def world_temp_path(run_dir: Path) -> Path:
    """Where `save_rehearsal_world` writes before renaming into place (a killed write leaves it behind)."""
    return run_dir / f".{REHEARSAL_WORLD_NAME}.tmp"


def _fresh_credentials() -> dict[str, str]:
    """A random credential for a rehearsal: the in-process emulator is the only thing that knows it."""
    return {f"AKIDrehearsal{secrets.token_hex(12)}": secrets.token_urlsafe(24)}
