"""The emulator worlds a rehearsal sends to — one per account (`RehearsalWorlds`): loaded from a world file (one
account, or several under `accounts`) or built from the mapping's rows; for a rerun, continued from the state the last
session left (saved in the run directory, without its credentials); and the random credential a rehearsal signs
with. The emulator module is imported only when a rehearsal needs it."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchcert.errors import SettingsError
from batchcert.model import group_by_profile
from batchcert.report import REHEARSAL_WORLD_NAME

if TYPE_CHECKING:
    from batchcert import emulator
    from batchcert.journal import Journal
    from batchcert.model import Mapping, Row


@dataclass
class RehearsalWorlds:
    """The worlds of a rehearsal by account name: a world file's `accounts` (the emulator's world contract), or a
    one-account world under "" — which stands for whichever single profile the rows use — or, without a file, a
    world per profile in which its rows succeed (`built`)."""

    worlds: dict[str, emulator.World]
    built: bool = False
    #: the profile a one-account world was given to (the first the rows name)
    _single: list[str] = field(default_factory=list)

    def refusal(self, profile: str, name_one: str = "name the row's account in a Profile column") -> str | None:
        """Why rows naming `profile` cannot be rehearsed in these worlds (None: they can). `name_one`: how the user
        names an account where the rehearsal was asked for (a row's Profile cell, or --profile)."""
        if self.built or (profile in self.worlds and (profile or len(self.worlds) == 1)):
            return None
        if list(self.worlds) == [""]:
            if not self._single:
                self._single.append(profile)
            if self._single[0] == profile:
                return None
            return (
                f"the world file holds one account, rehearsing profile {self._single[0]!r} — give it an `accounts` "
                'section with an account for each profile (README, "Many accounts in one run")'
            )
        accounts = ", ".join(map(repr, self.worlds))
        if not profile:
            return f"the world file holds several accounts ({accounts}): {name_one}"
        return f"the world file has no account {profile!r} (its accounts: {accounts})"

    def world_of(self, profile: str) -> emulator.World:
        return self.worlds[""] if list(self.worlds) == [""] else self.worlds[profile]


def rehearsal_worlds(world_path: Path | None, mapping: Mapping) -> RehearsalWorlds:
    """The given world file's accounts, or for each profile the rows name a world in which its valid rows would
    succeed."""
    if world_path is not None:
        return RehearsalWorlds(load_accounts(world_path))
    return _built_worlds(mapping.valid_rows())


def load_accounts(path: Path) -> dict[str, emulator.World]:
    """A world file's worlds by account name ("" for a one-account file)."""
    from batchcert import emulator

    found = emulator.load_estate(path)
    return dict(found.accounts) if isinstance(found, emulator.Estate) else {"": found}


def read_only_worlds(world_path: Path | None, profiles: list[str], name_one: str) -> dict[str, emulator.World]:
    """The world an inventory's or a probe's rehearsal reads for each of `profiles` ("": none named), by the rules of
    a run's rehearsal (`RehearsalWorlds.refusal`): a one-account world file stands for one profile, a file of several
    accounts serves each profile its account of that name. There are no rows to build the estate from that would
    say what is deployed, so the file is needed. Raises SettingsError naming the file and what to do (`name_one`:
    how the user names an account there)."""
    if world_path is None:
        raise SettingsError("a rehearsal of inventory or probe needs the estate to read: pass --world FILE")
    worlds = RehearsalWorlds(load_accounts(world_path))
    refused = [reason for profile in profiles if (reason := worlds.refusal(profile, name_one)) is not None]
    if refused:
        raise SettingsError(f"{world_path}: {'; '.join(dict.fromkeys(refused))}")
    return {profile: worlds.world_of(profile) for profile in profiles}


def continued_worlds(journal: Journal, facts: dict[str, str]) -> RehearsalWorlds:
    """The worlds a rehearsal's rerun continues in: the state the last session left, else the run's world file,
    else worlds built from the rows."""

    saved = journal.run_dir / REHEARSAL_WORLD_NAME
    if saved.is_file():
        worlds = load_accounts(saved)
        for world in worlds.values():
            world.credentials = _fresh_credentials()
        return RehearsalWorlds(worlds, built=len(worlds) > 1)
    if facts.get("world"):
        return RehearsalWorlds(load_accounts(Path(facts["world"])))
    return _built_worlds(journal.rows())


def _built_worlds(rows: list[Row]) -> RehearsalWorlds:
    """For each profile of `rows`, a world in which its rows would succeed, with a fresh credential of its own."""
    from batchcert import emulator

    return RehearsalWorlds(
        {
            profile: emulator.world_for_rows(account_rows, credentials=_fresh_credentials())
            for profile, account_rows in (group_by_profile(rows) or {"": []}).items()
        },
        built=True,
    )


def save_rehearsal_worlds(run_dir: Path, worlds: dict[str, emulator.World]) -> None:
    """Write the state a rehearsal session left into the run directory (its rerun continues there, its rollback
    runs there), through a temporary file renamed into place: one world, or several under `accounts` — those of
    accounts this session did not send to kept as the last one left them."""
    saved = run_dir / REHEARSAL_WORLD_NAME
    if saved.is_file() and list(worlds) != [""]:
        worlds = {name: world for name, world in load_accounts(saved).items() if name} | worlds

    def without_secrets(world: emulator.World) -> dict[str, Any]:
        state = world.to_dict()
        state.pop("credentials", None)  # never a secret in the run directory, not even an emulator's
        return state

    if list(worlds) == [""]:
        state = without_secrets(worlds[""])
    else:
        state = {"accounts": {name: without_secrets(world) for name, world in worlds.items()}}
    tmp = world_temp_path(run_dir)
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    tmp.replace(run_dir / REHEARSAL_WORLD_NAME)


def world_temp_path(run_dir: Path) -> Path:
    """Where `save_rehearsal_worlds` writes before renaming into place (a killed write leaves it behind)."""
    return run_dir / f".{REHEARSAL_WORLD_NAME}.tmp"


def _fresh_credentials() -> dict[str, str]:
    """A random credential for a rehearsal: the in-process emulator is the only thing that knows it."""
    return {f"AKIDrehearsal{secrets.token_hex(12)}": secrets.token_urlsafe(24)}
