"""The pool ranking a batch's instances without a group share (a heap)."""

from __future__ import annotations

from services.common.config import SchedulerSection
from services.scheduler.ranking import PoolRanking
from services.scheduler.weighers import weigh
from tests.unit.test_scheduler_steps import host, placing

CONFIG = SchedulerSection(vcpu_weight_multiplier=0.0)  # free RAM alone decides


def _take(ranking: PoolRanking, wanted=1, **request):
    instance = placing(**request)
    best = ranking.best(instance, wanted, max_checks=50)
    if best:
        best[0].take(instance.request.resources)
        ranking.restore(best, instance)
    return best


def test_the_first_choice_is_what_weighing_the_pool_would_choose():
    hosts = [host(f"h{i}", free_ram=1024 * (i % 7 + 1)) for i in range(20)]
    ranking = PoolRanking(hosts, placing(), CONFIG)
    expected = weigh(hosts, placing(), CONFIG)[:4]
    assert ranking.best(placing(), 4, max_checks=50) == expected


def test_instances_spread_as_each_choice_fills_its_host():
    hosts = [host("big", free_ram=4096), host("small", free_ram=2048)]
    ranking = PoolRanking(hosts, placing(), CONFIG)
    chosen = [_take(ranking, resources={"MEMORY_MB": 1024})[0].name for _ in range(4)]
    # big (4096) -> 3072 -> 2048, tied with small: the first weighed goes first.
    assert chosen[:2] == ["big", "big"]
    assert sorted(chosen[2:]) == ["big", "small"]
    assert {h.name: h.free_now("MEMORY_MB") for h in hosts} == {"big": 1024, "small": 1024}


def test_filters_apply_per_instance_and_refused_hosts_stay_in_the_pool():
    hosts = [host("h1", free_ram=8192), host("h2", free_ram=4096)]
    ranking = PoolRanking(hosts, placing(), CONFIG)
    avoiding = ranking.best(placing(ignore_hosts=frozenset({"h1"})), 2, max_checks=50)
    assert [h.name for h in avoiding] == ["h2"]
    ranking.restore(avoiding, placing())
    assert [h.name for h in ranking.best(placing(), 2, max_checks=50)] == ["h1", "h2"]


def test_nothing_is_found_when_every_checked_host_fails():
    hosts = [host(f"h{i}", zone="east") for i in range(10)]
    ranking = PoolRanking(hosts, placing(), CONFIG)
    assert ranking.best(placing(availability_zone="west"), 1, max_checks=3) == []
    assert len(ranking.best(placing(), 10, max_checks=3)) == 10  # nothing was lost
