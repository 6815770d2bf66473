"""The reconciler's host comparisons: a bounded page of providers per pass,
round robin, and only hosts where something changed since they last agreed."""

from __future__ import annotations

from dataclasses import dataclass, replace

from services.api_gateway.reconciler import Reconciler
from services.api_gateway.servers import ACTIVE
from services.common.errors import NotFound


@dataclass
class _Row:
    id: str
    provider_uuid: str
    status: str = ACTIVE
    task_state: str = ""
    project_id: str = "p"
    user_id: str = "u"
    vcpus: int = 1
    ram_mb: int = 512
    disk_gb: int = 1
    resources: dict | None = None


class _Placement:
    """Providers in id order with their generations and consumers."""

    def __init__(self, names: list[str]) -> None:
        self.generation = {f"rp-{n}": 1 for n in names}
        self.consumers: dict[str, set[str]] = {p: set() for p in self.generation}
        self.compared: list[str] = []
        self.claimed_again: list[str] = []

    async def generations(self, page_size: int, page_token: str) -> tuple[dict[str, int], str]:
        order = list(self.generation)
        start = int(page_token or 0)
        page = order[start : start + page_size]
        more = start + page_size < len(order)
        return {p: self.generation[p] for p in page}, str(start + page_size) if more else ""

    async def consumers_on(self, provider: str) -> tuple[int, set[str]]:
        self.compared.append(provider)
        if provider not in self.generation:
            raise NotFound(f"resource provider {provider} does not exist")
        return self.generation[provider], set(self.consumers[provider])

    async def move(self, consumer: str, project: str, user: str, allocations: dict) -> None:
        self.claimed_again.append(consumer)
        for provider in allocations:
            self.consumers[provider].add(consumer)
            self.generation[provider] += 1

    async def release(self, consumer: str) -> None:
        for provider, consumers in self.consumers.items():
            if consumer in consumers:
                consumers.discard(consumer)
                self.generation[provider] += 1


class _Records:
    def __init__(self) -> None:
        self.rows: list[_Row] = []

    async def load(self, server_id: str) -> _Row | None:
        return next((row for row in self.rows if row.id == server_id), None)

    async def on_providers(self, providers: list[str]) -> dict[str, list[_Row]]:
        by_provider: dict[str, list[_Row]] = {}
        for row in self.rows:
            if row.provider_uuid in providers and row.status != "DELETED":
                # A copy: what was read does not change with the records.
                by_provider.setdefault(row.provider_uuid, []).append(replace(row))
        return by_provider


class _Liveness:
    def __init__(self, names: list[str]) -> None:
        self.live = {f"rp-{n}": {"host": n, "provider_uuid": f"rp-{n}"} for n in names}

    def by_provider(self) -> dict:
        return self.live


def _reconciler(placement, records, liveness, per_pass: int) -> Reconciler:
    return Reconciler(records, None, None, placement, liveness, None, 10.0, 120.0, per_pass)


async def _passes(reconciler: Reconciler, placement: _Placement, count: int) -> list[list[str]]:
    compared = []
    for _ in range(count):
        placement.compared = []
        await reconciler._compare_next_hosts()
        compared.append(placement.compared)
    return compared


async def test_each_pass_takes_the_next_page_and_wraps_round():
    names = ["h1", "h2", "h3", "h4", "h5"]
    placement = _Placement(names)
    # Something to compare on every host every time: a consumer we do not know.
    placement.consumers = {p: {"stranger"} for p in placement.generation}
    reconciler = _reconciler(placement, _Records(), _Liveness(names), per_pass=2)
    passes = await _passes(reconciler, placement, 4)
    assert passes == [["rp-h1", "rp-h2"], ["rp-h3", "rp-h4"], ["rp-h5"], ["rp-h1", "rp-h2"]]


async def test_hosts_that_agreed_are_compared_again_only_once_something_changed():
    names = ["h1", "h2", "h3"]
    placement, records = _Placement(names), _Records()
    records.rows = [_Row("s1", "rp-h1")]
    placement.consumers["rp-h1"] = {"s1"}
    reconciler = _reconciler(placement, records, _Liveness(names), per_pass=10)
    assert await _passes(reconciler, placement, 2) == [["rp-h1", "rp-h2", "rp-h3"], []]
    placement.generation["rp-h2"] += 1  # an allocation changed there
    records.rows.append(_Row("s2", "rp-h3"))  # and a server of ours arrived here
    placement.consumers["rp-h3"] = {"s2"}
    placement.generation["rp-h3"] += 1
    assert await _passes(reconciler, placement, 2) == [["rp-h2", "rp-h3"], []]
    records.rows[0].status = "DELETED"  # its release lost: only our side changed
    assert await _passes(reconciler, placement, 2) == [["rp-h1"], ["rp-h1"]]
    assert placement.consumers["rp-h1"] == set()  # released, then agreed at once
    assert await _passes(reconciler, placement, 1) == [[]]


async def test_providers_without_a_live_host_are_left_and_a_vanished_one_fails_no_pass():
    placement = _Placement(["h1", "h2", "h3"])
    liveness = _Liveness(["h1", "h3"])
    reconciler = _reconciler(placement, _Records(), liveness, per_pass=10)
    del placement.generation["rp-h1"]  # deleted between the listing and the comparison
    listing = placement.generations

    async def stale_listing(page_size, page_token):
        page, token = await listing(page_size, page_token)
        return {"rp-h1": 1, **page}, token

    placement.generations = stale_listing
    assert await _passes(reconciler, placement, 1) == [["rp-h1", "rp-h3"]]


async def test_a_server_deleted_after_the_listing_is_not_claimed_again():
    placement, records = _Placement(["h1"]), _Records()
    records.rows = [_Row("s1", "rp-h1")]  # ACTIVE when the pass lists our servers
    consumers_on = placement.consumers_on

    async def deleted_meanwhile(provider):
        # The delete began (its task first) and released the allocation.
        records.rows[0].task_state = "deleting"
        return await consumers_on(provider)

    placement.consumers_on = deleted_meanwhile
    await _passes(_reconciler(placement, records, _Liveness(["h1"]), per_pass=10), placement, 1)
    assert placement.claimed_again == [] and placement.consumers["rp-h1"] == set()


async def test_a_settled_server_whose_allocation_is_lost_is_claimed_again():
    placement, records = _Placement(["h1"]), _Records()
    records.rows = [_Row("s1", "rp-h1")]
    reconciler = _reconciler(placement, records, _Liveness(["h1"]), per_pass=10)
    await _passes(reconciler, placement, 1)
    assert placement.claimed_again == ["s1"] and placement.consumers["rp-h1"] == {"s1"}
