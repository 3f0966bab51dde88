"""Which account each row belongs to (README, "Many accounts in one run"): a row's Profile cell, else the run's
`--profile`, else "" (the default credentials). A row naming a profile that does not exist is invalid, and so is every
row of a listener named under two profiles: a listener lives in one account, and sending it with the other account's
credential would at best answer "not found" and at worst change what the user did not mean (never act on a guess)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

from batchcert.mapping.cells import show
from batchcert.mapping.columns import PROFILE
from batchcert.model import Mapping


def assign_profiles(mapping: Mapping, default_profile: str, refusal: Callable[[str], str | None]) -> Mapping:
    """`mapping` with every row's profile decided and the rows it makes invalid: `refusal(profile)` says why a
    profile cannot be used (it does not exist), or None. Asks once per distinct profile."""
    rows = (
        tuple(row if row.profile else replace(row, profile=default_profile) for row in mapping.rows)
        if default_profile
        else mapping.rows
    )
    column = mapping.column_of.get(PROFILE, PROFILE)
    problems = dict(mapping.problems)

    def refuse(row_number: int, text: str) -> None:
        problems[row_number] = f"{problems[row_number]}; {text}" if row_number in problems else text

    verdicts: dict[str, str | None] = {}
    listener_profiles: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.row_number in mapping.problems:
            continue
        if row.profile not in verdicts:
            verdicts[row.profile] = refusal(row.profile)
        why = verdicts[row.profile]
        if why is not None:
            named = f"{column} {show(row.profile)}" if row.profile else "the default credentials"
            refuse(row.row_number, f"row {row.row_number}: {named}: {why}")
            continue
        listener_profiles[row.listener_id][row.profile].append(row.row_number)
    for listener_id, by_profile in listener_profiles.items():
        if len(by_profile) < 2:
            continue
        where = "; ".join(
            f"{show(profile) if profile else '(no profile)'} in row(s) {', '.join(map(str, numbers))}"
            for profile, numbers in by_profile.items()
        )
        for numbers in by_profile.values():
            for n in numbers:
                refuse(
                    n,
                    f"row {n}: {listener_id} is named under more than one {column} ({where}) — a listener belongs "
                    f"to one account: give all its rows the profile of that account",
                )
    duplicate_of = {n: first for n, first in mapping.duplicate_of.items() if n not in problems}
    return replace(mapping, rows=rows, problems=problems, duplicate_of=duplicate_of)
