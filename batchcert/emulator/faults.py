"""Faults the emulator injects into the writes: the world file's `faults` section (`Faults`), the scripted faults
each domain or listener has left (`FaultScripts`, with explicit counts), and the `FaultInjector` that picks the fault
acting on one write and acts out those that answer before anything is looked at.

Fault kinds: `InternalError`, `http502`, `reset`, `hang` (no answer, nothing applied), `apply_then_hang` (applied, no
answer), `changing` (the domain reports DomainStatus 1 for `seconds`; at listener scope the listener reads
ListenerStatus 4 and refuses changes for `seconds`), `ListenerHasTask` (the listener stays busy for `seconds`; < 0 until
released through `/_emulator/release`), `task_fail` (accepted, DomainStatus 1 / ListenerStatus 4 during the task, then
rolled back), `code` (answers `{"code": "FailedOperation.…"}`). `faults.domains` scripts ModifyCertificate per domain,
`faults.listeners` scripts ModifyHTTPSListenerAttribute per listener; `faults.probabilities` draw for both writes.
A scripted entry acts `times` times (default 1). `faults.storms`: [[start_s, seconds], …] after start during which
every request is throttled (`admission`).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchcert.emulator.outcomes import ApiError, ConnectionAborted, HttpFault

if TYPE_CHECKING:
    from batchcert.emulator.world import World

FAULT_KINDS = (
    "InternalError",
    "http502",
    "reset",
    "hang",
    "apply_then_hang",
    "changing",
    "ListenerHasTask",
    "task_fail",
    "code",
)
#: scripted fault kinds that act on a change once it is applied (a refused attempt does not use them up)
APPLY_FAULTS = frozenset({"task_fail"})


@dataclass
class Faults:
    """The world file's `faults` section, as written: scripted entries stay the contract's dicts."""

    seed: int = 0
    hang_seconds: float = 30.0
    probabilities: dict[str, float] = field(default_factory=dict)
    #: scripted faults of ModifyCertificate, by domain
    domains: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    storms: list[tuple[float, float]] = field(default_factory=list)
    #: scripted faults of ModifyHTTPSListenerAttribute, by listener
    listeners: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, value: Any) -> Faults:
        """The `faults` section of a world file. Raises ValueError on an unknown fault kind."""
        f = dict(value)
        faults = cls(
            seed=int(f.get("seed", 0)),
            hang_seconds=float(f.get("hang_seconds", 30.0)),
            probabilities={str(k): float(v) for k, v in dict(f.get("probabilities", {})).items()},
            domains={str(k): [dict(x) for x in v] for k, v in dict(f.get("domains", {})).items()},
            storms=[(float(a), float(b)) for a, b in f.get("storms", [])],
            listeners={str(k): [dict(x) for x in v] for k, v in dict(f.get("listeners", {})).items()},
        )
        scripted = [x.get("kind") for script in (faults.domains, faults.listeners) for v in script.values() for x in v]
        for kind in [*faults.probabilities, *scripted]:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        return faults

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON shape (`faults` of a world file)."""
        return {
            "seed": self.seed,
            "hang_seconds": self.hang_seconds,
            "probabilities": dict(self.probabilities),
            "domains": copy.deepcopy(self.domains),
            "storms": [list(s) for s in self.storms],
            "listeners": copy.deepcopy(self.listeners),
        }


@dataclass(frozen=True)
class Fault:
    """One fault acting on one request: its kind, and the world-file entry it comes from, whose `seconds`, `code`
    and `message` are read when the kind needs them."""

    kind: str
    entry: Mapping[str, Any]

    @classmethod
    def drawn(cls, kind: str) -> Fault:
        """A fault drawn with the world's probabilities (its entry names the kind only)."""
        return cls(kind, {"kind": kind})

    @property
    def seconds(self) -> float:
        """How long a `changing` or `ListenerHasTask` fault holds (default 1 s; < 0: until released)."""
        return float(self.entry.get("seconds", 1.0))

    @property
    def code(self) -> str:
        return str(self.entry["code"])

    @property
    def message(self) -> str:
        return str(self.entry.get("message", "The operation failed; try again later."))


@dataclass(frozen=True)
class ScriptedFault:
    """One entry of a fault script, as the world file gives it, and how many times it has acted."""

    entry: Mapping[str, Any]
    used: int = 0

    @property
    def kind(self) -> Any:
        return self.entry.get("kind")

    @property
    def remaining(self) -> int:
        """How many more times it acts (`times` in the entry, default 1, less those used)."""
        return int(self.entry.get("times", 1)) - self.used

    def to_dict(self) -> dict[str, Any]:
        """The entry as a world saved now keeps it: `times` counts what is left once it has acted."""
        data = copy.deepcopy(dict(self.entry))
        if self.used:
            data["times"] = self.remaining
        return data


class FaultScripts:
    """The scripted faults of one write action, by key (a domain, or a listener), each with what it has left."""

    def __init__(self, scripts: Mapping[str, list[dict[str, Any]]]) -> None:
        self._scripts: dict[str, list[ScriptedFault]] = {
            key: [ScriptedFault(copy.deepcopy(entry)) for entry in entries] for key, entries in scripts.items()
        }

    def head(self, key: str) -> ScriptedFault | None:
        """The scripted fault that acts next for `key` (None: nothing scripted left)."""
        script = self._scripts.get(key)
        return script[0] if script else None

    def take(self, key: str) -> Fault:
        """The next fault for `key`, used once now (dropped from the script when it has no uses left)."""
        script = self._scripts[key]
        step = dataclasses.replace(script[0], used=script[0].used + 1)
        if step.remaining <= 0:
            script.pop(0)
        else:
            script[0] = step
        return Fault(step.entry["kind"], step.entry)

    def remaining(self) -> dict[str, list[dict[str, Any]]]:
        """The scripts as the world file writes them, without the entries used up (and keys left with none)."""
        return {key: [step.to_dict() for step in script] for key, script in self._scripts.items() if script}


class FaultInjector:
    """Which fault, if any, acts on a write — the next scripted one for its domain or listener, else one drawn with
    the world's probabilities — and acting out those that answer before the request is looked at.

    `rng` is the emulator's one generator (seeded with `faults.seed`), which draws latencies too."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        #: ModifyCertificate's scripts, by domain
        self.domains = FaultScripts(world.faults.domains)
        #: ModifyHTTPSListenerAttribute's scripts, by listener
        self.listeners = FaultScripts(world.faults.listeners)

    def next_fault(self, scripts: FaultScripts, key: str) -> Fault | None:
        """The fault scripted for `key` in `scripts`, else a drawn one (None: no fault)."""
        head = scripts.head(key)
        if head is not None and head.kind in APPLY_FAULTS:
            return None  # taken by the change that is applied (`take_apply_fault`), not by a refused attempt
        if head is not None:
            return scripts.take(key)
        draw = self.rng.random()
        for drawn, p in self.world.faults.probabilities.items():
            if draw < p:
                return Fault.drawn(drawn)
            draw -= p
        return None

    @staticmethod
    def take_apply_fault(scripts: FaultScripts, key: str) -> str | None:
        """The kind of a scripted fault that acts on an applied change (`task_fail`), used now."""
        head = scripts.head(key)
        if head is None or head.kind not in APPLY_FAULTS:
            return None
        return str(scripts.take(key).kind)

    async def answer_early(self, fault: Fault | None) -> None:
        """Answer a fault that acts before anything is looked at: errors, gateway pages, dropped connections."""
        kind = fault.kind if fault else None
        if kind == "InternalError":
            raise ApiError("InternalError", "An internal error has occurred. Retry your request.")
        if kind == "http502":
            raise HttpFault(502, "<html><body><h1>502 Bad Gateway</h1></body></html>")
        if kind == "reset":
            raise ConnectionAborted
        if kind == "hang":
            await self.hang()
        if kind == "code" and fault is not None:
            raise ApiError(fault.code, fault.message)

    async def hang(self) -> None:
        """Hold the request for the world's `hang_seconds`, then drop the connection unanswered."""
        await asyncio.sleep(self.world.faults.hang_seconds)
        raise ConnectionAborted

    def remaining(self) -> Faults:
        """The world's faults with the scripted ones not used yet: what a world saved after a rehearsal keeps, so
        its rerun meets what is left, not the whole script again."""
        return dataclasses.replace(
            self.world.faults, domains=self.domains.remaining(), listeners=self.listeners.remaining()
        )
