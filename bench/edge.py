"""What benchmarks need to drive the REST edge and to account for CPU.

The clients are aiohttp sessions, one keep-alive connection each: the
benchmark shares the machine's cores with the mesh it measures, and httpx
cost about five times the CPU per request here (4.2 against 0.9 ms per
single create in bench/boot.py, polling included).
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


class EdgeClient:
    """A REST client of the edge with one bearer token and one connection."""

    def __init__(self, base_url: str, token: str, connections: int = 1) -> None:
        self.session = aiohttp.ClientSession(
            base_url=base_url,
            headers={"authorization": f"Bearer {token}"},
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=120),
        )

    async def request(self, method: str, path: str, **kwargs) -> Any:
        """The JSON answer; an error status raises with the error body in the message."""
        async with self.session.request(method, path, **kwargs) as reply:
            body = await reply.read()
            if reply.status >= 400:
                raise RuntimeError(f"{method} {path}: {reply.status} {body[:500]!r}")
            return await reply.json() if body else None

    async def get(self, path: str, **params) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: dict) -> Any:
        return await self.request("POST", path, json=body)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def close(self) -> None:
        await self.session.close()


async def all_servers(admin: EdgeClient, **params) -> list[dict]:
    """Every server of every project (newest first), a page of 1000 at a time."""
    servers, token = [], ""
    while True:
        query = {"all_projects": "true", "page_size": 1000, **params}
        if token:
            query["page_token"] = token
        body = await admin.get("/v1/servers", **query)
        servers += body.get("servers", [])
        token = body.get("next_page_token", "")
        if not token:
            return servers


async def until_none(admin: EdgeClient, seconds: float, **params) -> None:
    """Poll until no server matches (a page of one is enough to know)."""
    async with asyncio.timeout(seconds):
        while True:
            query = {"all_projects": "true", "page_size": 1, **params}
            if not (await admin.get("/v1/servers", **query)).get("servers"):
                return
            await asyncio.sleep(0.25)


def cpu_ms(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_MS


def postgres_cpu_ms() -> float:
    """CPU of this machine's PostgreSQL so far: its live processes, plus what its
    exited backends used (the postmaster's children times)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()
        if name == "postgres":
            total += int(fields[11]) + int(fields[12])
            if (
                fields[1] == "1"
                or Path(f"/proc/{fields[1]}/comm").read_text().strip() != "postgres"
            ):
                total += int(fields[13]) + int(fields[14])  # the postmaster: reaped children
    return total * TICK_MS


def own_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000


def yardstick_ms() -> float:
    """Milliseconds for a fixed pure-Python loop, best of five: how fast this
    machine ran Python at the time of a run. Shared virtual machines speed up
    and slow down with their neighbours (by up to half here, with no steal
    showing); results of two runs compare only at similar yardsticks."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        sum(i * i for i in range(1_000_000))
        best = min(best, time.perf_counter() - started)
    return best * 1000


def machine_ticks() -> tuple[int, int]:
    """(steal, all) clock ticks of this machine's CPUs so far (/proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guests
    # are counted in user and nice already.
    return fields[7], sum(fields[:8])


def steal_pct_since(before: tuple[int, int]) -> float:
    """The share of the machine's CPU time, in percent, that the hypervisor
    gave to other guests since `before` (a machine_ticks() reading)."""
    steal, ticks = (now - then for now, then in zip(machine_ticks(), before, strict=True))
    return 100 * steal / max(ticks, 1)


class CpuMeter:
    """CPU milliseconds each part spent between start() and stop(); a part may be
    several processes (the host simulators), or a function (the database server),
    and the benchmark's own client is one.

    Also the share of the machine's CPU time the hypervisor gave to others
    meanwhile (steal, in `steal_pct` after stop()): on a shared virtual machine
    it moves results from run to run, and a figure means little without it."""

    CLIENT = "bench client"

    def __init__(self, parts: dict[str, list[int] | Callable[[], float]]) -> None:
        self._parts = parts
        self._before: dict[str, float] = {}
        self._ticks_before = (0, 0)
        self.steal_pct = 0.0

    def _now(self) -> dict[str, float]:
        return {
            name: part() if callable(part) else sum(map(cpu_ms, part))
            for name, part in self._parts.items()
        } | {self.CLIENT: own_cpu_ms()}

    def start(self) -> None:
        self._before = self._now()
        self._ticks_before = machine_ticks()

    def stop(self) -> dict[str, float]:
        after = self._now()
        self.steal_pct = steal_pct_since(self._ticks_before)
        return {name: after[name] - self._before[name] for name in after}
