"""Each account's certificates read once before the operator is asked, and what the operator should know about the
rows' targets from them (expiring soon, or not checked)."""

from __future__ import annotations

import asyncio
import time

from batchcert.live.certificates import expiring_targets
from batchcert.live.reader import CertificateIndex
from batchcert.model import Row, group_by_profile
from batchcert.settings import RunSettings
from batchcert.workflow.target import Target, Targets, build_reader, connect

#: attempts of the certificate read before the operator is asked: it only feeds warnings, and a run whose read
#: fails here reads again (with the run's attempts) before it sends — an unreachable endpoint must not hold the prompt
PROMPT_READ_ATTEMPTS = 2


def certificate_warnings(
    rows: list[Row], certificates: CertificateIndex | None, settings: RunSettings
) -> tuple[str, ...]:
    """What the operator should know about the targets before sending: those expiring soon, or that they could
    not be checked (or not yet: a transient failure is read again before sending)."""
    if certificates is None or not rows:
        return ()
    if certificates.worth_reading_again:
        return (f"the target certificates could not be read yet ({certificates.failed}): read again before sending",)
    if certificates.failed:
        return (f"the target certificates could not be checked: DescribeCertificates answered {certificates.failed}",)
    return expiring_targets(rows, certificates.by_id, time.time(), settings.min_validity_days)


def read_all_certificates(targets: Targets) -> dict[str, CertificateIndex]:
    """Every account's certificates (DescribeCertificates, paged), by profile, the accounts read at once, before the
    operator is asked."""

    async def read(target: Target) -> CertificateIndex:
        async with connect(target) as (client, quota):
            return await build_reader(client, quota, target, PROMPT_READ_ATTEMPTS).certificates()

    async def read_all() -> list[CertificateIndex]:
        return await asyncio.gather(*(read(target) for target in targets.by_profile.values()))

    return dict(zip(targets.by_profile, asyncio.run(read_all()), strict=True))


def all_certificate_warnings(
    rows: list[Row], certificates: dict[str, CertificateIndex] | None, targets: Targets
) -> tuple[str, ...]:
    """`certificate_warnings` for each account's rows against its own certificates (a certificate id belongs to one
    account), each prefixed with the account when the run has several."""
    if certificates is None:
        return ()
    warnings: list[str] = []
    rows_of = group_by_profile(rows)
    for profile, index in certificates.items():
        found = certificate_warnings(rows_of.get(profile, []), index, targets.settings)
        prefix = f"account {profile or '(default)'}: " if len(certificates) > 1 else ""
        warnings.extend(prefix + warning for warning in found)
    return tuple(warnings)
