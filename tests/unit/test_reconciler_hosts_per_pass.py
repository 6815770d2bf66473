"""The reconciler compares a bounded slice of the live hosts per pass, round robin."""

from __future__ import annotations

from services.api_gateway.reconciler import Reconciler


class _Liveness:
    def __init__(self, names: list[str]) -> None:
        self._alive = {n: {"host": n, "provider_uuid": f"rp-{n}"} for n in names}

    def alive(self) -> dict:
        return self._alive


def _reconciler(names: list[str], per_pass: int) -> Reconciler:
    return Reconciler(None, None, None, None, _Liveness(names), None, 10.0, 120.0, per_pass)


def test_each_pass_takes_the_next_hosts_and_wraps_round():
    reconciler = _reconciler(["h1", "h2", "h3", "h4", "h5"], per_pass=2)
    passes = [[v["host"] for v in reconciler._next_hosts()] for _ in range(3)]
    assert passes == [["h1", "h2"], ["h3", "h4"], ["h5", "h1"]]


def test_a_small_fleet_is_compared_whole_every_pass():
    reconciler = _reconciler(["h1", "h2"], per_pass=200)
    assert [v["host"] for v in reconciler._next_hosts()] == ["h1", "h2"]
    assert [v["host"] for v in reconciler._next_hosts()] == ["h1", "h2"]
