"""Every paged listing is read in one place (`LiveReader.listing`), and each caller says what a listing that failed
or ended short means for it: the inventory stops (tests/test_inventory_complete.py), the certificate pre-flight skips
its check instead of refusing rows whose target is in the pages it did not get, and a listener on a group the group
listing did not reach says why it has no access address. On virtual time, the emulator in process."""

from __future__ import annotations

import random
from typing import Any

from batchcert import emulator as emu
from batchcert.api.vocabulary import ACTION_DESCRIBE_CERTIFICATES, ACTION_DESCRIBE_GROUPS, PAGE_LIMIT
from batchcert.live.access import AccessPoints
from batchcert.live.reader import LiveReader
from batchcert.runner import RunnerConfig
from batchcert.schedule import Quota, Sleeper
from tests.fake_api import EmulatorApi
from tests.virtual_time import run_virtual
from tests.worlds import SECRET_ID, SECRET_KEY


def reader_of(world: emu.World) -> tuple[EmulatorApi, LiveReader]:
    api = EmulatorApi(world)
    return api, LiveReader(api, Quota(1000), RunnerConfig().retry_policy(3), Sleeper(), random.Random(1))


def certificates_world(count: int, **extra: Any) -> emu.World:
    certificates = {f"cert-{i:04d}": {"type": 2, "domains": [f"d{i}.example.com"]} for i in range(count)}
    return emu.World.from_dict(
        {"credentials": {SECRET_ID: SECRET_KEY}, "listeners": {}, "certificates": certificates, **extra}
    )


def test_a_listing_is_read_page_by_page_to_its_total_count() -> None:
    count = PAGE_LIMIT[ACTION_DESCRIBE_CERTIFICATES] * 2 + 7
    api, reader = reader_of(certificates_world(count))
    index = run_virtual(reader.certificates())
    assert not index.failed
    assert len(index.by_id) == count
    assert len(api.sends[ACTION_DESCRIBE_CERTIFICATES]) == 3


def test_a_certificate_listing_that_ends_short_skips_the_check_instead_of_refusing_rows() -> None:
    limit = PAGE_LIMIT[ACTION_DESCRIBE_CERTIFICATES]
    quirks = {"listing_quirks": {ACTION_DESCRIBE_CERTIFICATES: {"empty_from_offset": limit}}}
    _, reader = reader_of(certificates_world(limit + 5, **quirks))
    index = run_virtual(reader.certificates())
    assert index.failed == f"an empty page at Offset {limit} before its TotalCount {limit + 5}"
    assert not index.worth_reading_again  # the same listing would end short again: the check is skipped


def test_a_listener_on_a_group_the_listing_did_not_reach_says_why_it_has_no_address() -> None:
    world = emu.World.from_dict(
        {
            "credentials": {SECRET_ID: SECRET_KEY},
            "groups": {"lg-aaaa0001": {"name": "g"}},
            "listeners": {"listener-grp00001": {"group_id": "lg-aaaa0001", "domains": {"a.example.com": {}}}},
            "certificates": {"cert-old": {"type": 2, "domains": ["a.example.com"]}},
            "listing_quirks": {ACTION_DESCRIBE_GROUPS: {"empty_from_offset": 0}},
        }
    )
    _, reader = reader_of(world)
    points = AccessPoints(reader)

    async def read() -> Any:
        try:
            return await points.of("listener-grp00001")
        finally:
            await points.close()

    point = run_virtual(read())
    assert point.hosts == ()
    assert (
        points.why["listener-grp00001"]
        == f"its group was not read: {ACTION_DESCRIBE_GROUPS} ended after 0 of its 1 groups"
    )
