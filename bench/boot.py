"""Boot benchmark: servers created through the REST edge until ACTIVE, then deleted.

    .venv/bin/python -m bench.boot [--hosts 1000,10000] [--servers 10000[,single=N,...]]
                                   [--clients 8] [--variants single,multi,anti-affinity]
                                   [--databases sqlite,postgresql] [--rates multi=500] [--quick]

For each database and host count it starts the real mesh (bench/mesh.py: a
fresh database, N simulated hosts) and, per variant, K clients each with its
own project and token boot M servers (flavor m1.tiny) through Envoy:
  * single: one server per POST /v1/servers;
  * multi: min_count = max_count = 100 per request;
  * anti-affinity: one server per request, each in an anti-affinity server
    group of 10 members, fewer on a smaller mesh (the client creates the groups).
Each client sends its next create as soon as the last is answered (closed
loop: the most the mesh can take; create latency is then mostly queueing,
clients x servers per create / boots per second). With --rates V=R
variant V runs again open loop: creates leave at a fixed pace of R servers/s
shared by the clients, whatever the answers, so the create latency is that
of a mesh serving R boots/s. It waits until no server is in BUILD, then
deletes them all, each client with 8 deletes out at once, and waits until
they are gone. Measured:
  * boots/s: servers ACTIVE over the time from the first create sent to the
    last server ACTIVE (the server's update_time when it went ACTIVE);
  * create latency p50/p95/p99: POST /v1/servers as the client saw it;
  * time to ACTIVE p50/p99: update_time - create_time of each server (both
    written by api_gateway, when the create arrived and when it went ACTIVE);
  * CPU milliseconds per server booted and per server deleted, by part of
    the mesh (bench/edge.py's CpuMeter);
  * with --trace-ratio > 0 only: scheduling, the (Batch)SelectDestinations
    calls as the scheduler served them, and placement, the placement calls
    made within one (candidates and claims), from the services' own
    OpenTelemetry spans for that share of the requests, printed to their
    logs and read back (bench/spans.py). Off by default: the instrumentation
    runs on every call, sampled or not, and cost ~9% of the CPU per boot.
Writes bench/results/boot.md and boot.png (--quick only prints).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import uvloop

from bench.edge import (
    CpuMeter,
    EdgeClient,
    all_servers,
    postgres_cpu_ms,
    until_none,
    yardstick_ms,
)
from bench.mesh import BenchMesh
from bench.placement import RESULTS, percentile
from bench.spans import SpanLogs

FLAVOR = "m1.tiny"
GROUP_SIZE = 10
DELETES_IN_FLIGHT = 8  # per client
# api_gateway schedules the builds that queue together in one call.
SELECT = ("SchedulerService/SelectDestinations", "SchedulerService/BatchSelectDestinations")
PLACEMENT = (
    "AllocationCandidateService/ListAllocationCandidates",
    "AllocationService/PutAllocations",
    "AllocationService/BatchPutAllocations",
    "AllocationService/GetAllocations",
    "AllocationService/BatchGetAllocations",
)
QUOTA = ("QuotaService/Claim", "QuotaService/ClaimBatch")


@dataclass(frozen=True)
class Variant:
    name: str
    per_request: int  # servers per POST /v1/servers
    group_size: int  # members per anti-affinity group; 0 = no groups


VARIANTS = {
    "single": Variant("single", 1, 0),
    "multi": Variant("multi", 100, 0),
    "anti-affinity": Variant("anti-affinity", 1, GROUP_SIZE),
}


class Pace:
    """Open-loop send slots shared by every client: `rate` servers per second."""

    def __init__(self, rate: float, per_request: int) -> None:
        self._interval = per_request / rate
        self._next = time.perf_counter()

    def slot(self) -> float:
        slot, self._next = self._next, self._next + self._interval
        return slot


def _time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Client:
    """One benchmark client: its own project and token, its own connections to the edge."""

    def __init__(self, mesh: BenchMesh, index: int, tag: str, connections: int = 1) -> None:
        token = mesh.token(project=f"bench-{tag}-{index}", user=f"u{index}", roles=["member"])
        self.http = EdgeClient(mesh.rest_url, token, connections)
        self.latencies: list[float] = []
        self.ids: list[str] = []

    async def make_groups(self, variant: Variant, count: int) -> list[str]:
        groups = []
        for _ in range(-(-count // variant.group_size) if variant.group_size else 0):
            reply = await self.http.post(
                "/v1/server_groups", {"name": "g", "policy": "anti-affinity"}
            )
            groups.append(reply["id"])
        return groups

    async def create(
        self, variant: Variant, count: int, groups: list[str], pace: Pace | None = None
    ) -> None:
        """Closed loop (the next create once the last is answered), or, paced,
        open loop: each create leaves at its slot whatever the others do, and
        its latency counts from that slot (no coordinated omission)."""
        sends = []
        made = 0
        while made < count:
            n = min(variant.per_request, count - made)
            server = {"name": "bench", "flavor": FLAVOR, "image_ref": "cirros"}
            if groups:
                server["server_group_id"] = groups[made // variant.group_size]
            body = {"server": server, "min_count": n, "max_count": n}
            if pace is None:
                await self._post(body, time.perf_counter())
            else:
                slot = pace.slot()
                await asyncio.sleep(max(0.0, slot - time.perf_counter()))
                sends.append(asyncio.create_task(self._post(body, slot)))
            made += n
        await asyncio.gather(*sends)

    async def _post(self, body: dict, since: float) -> None:
        reply = await self.http.post("/v1/servers", body)
        self.latencies.append((time.perf_counter() - since) * 1000)
        self.ids += [s["id"] for s in reply["servers"]]

    async def delete_all(self) -> None:
        """Several deletes out at once (one per connection): a user tearing down
        a fleet does not wait for each delete before the next."""
        pending = iter(self.ids)

        async def one_at_a_time() -> None:
            for server_id in pending:
                await self.http.delete(f"/v1/servers/{server_id}")

        await asyncio.gather(*(one_at_a_time() for _ in range(DELETES_IN_FLIGHT)))

    async def close(self) -> None:
        await self.http.close()


def _parts(mesh: BenchMesh) -> dict:
    parts: dict = {name: [pid] for name, pid in mesh.pids().items()}
    parts["hosts"] = mesh.host_pids()
    if mesh.database == "postgresql":  # the database server shares the cores too
        parts["postgresql"] = postgres_cpu_ms
    return parts


async def run_variant(
    mesh: BenchMesh, variant: Variant, servers: int, clients: int, rate: float = 0.0
) -> dict:
    tag = f"{variant.name}-{time.monotonic_ns()}"
    admin = EdgeClient(mesh.rest_url, mesh.token(project="admin", user="admin", roles=["admin"]))
    # Hard anti-affinity needs a host per member: a small mesh gets smaller groups.
    variant = replace(variant, group_size=min(variant.group_size, mesh.hosts))
    # Paced, a client may have several creates out at once.
    workers = [
        Client(mesh, i, tag, connections=64 if rate else DELETES_IN_FLIGHT) for i in range(clients)
    ]
    share = [servers // clients + (i < servers % clients) for i in range(clients)]
    spans = SpanLogs(mesh.service_logs())
    cpu = CpuMeter(_parts(mesh))
    try:
        groups = await asyncio.gather(
            *(w.make_groups(variant, n) for w, n in zip(workers, share, strict=True))
        )
        spans.mark()
        cpu.start()
        first_create = time.time()
        pace = Pace(rate, variant.per_request) if rate else None
        await asyncio.gather(
            *(w.create(variant, n, g, pace) for w, n, g in zip(workers, share, groups, strict=True))
        )
        created = time.time()
        await until_none(admin, 1800, status="BUILD")
        boot_cpu = cpu.stop()
        boot_steal = cpu.steal_pct
        settled = await all_servers(admin)
        active = [s for s in settled if s["status"] == "ACTIVE"]
        await asyncio.sleep(1.5)  # span processors export every 0.5 s (bench/mesh.py)
        spans.read()
        cpu.start()
        started_delete = time.perf_counter()
        await asyncio.gather(*(w.delete_all() for w in workers))
        await until_none(admin, 1800)
        delete_s = time.perf_counter() - started_delete
        delete_cpu = cpu.stop()
    finally:
        for w in workers:
            await w.close()
        await admin.close()
    last_active = max(_time(s["update_time"]) for s in active) if active else created
    to_active = [(_time(s["update_time"]) - _time(s["create_time"])) * 1000 for s in active]
    latencies = [ms for w in workers for ms in w.latencies]
    select = spans.durations(SELECT)
    placement = spans.per_trace(PLACEMENT)
    booted = max(len(active), 1)
    return {
        "variant": variant.name + (f" @{rate:.0f}/s" if rate else ""),
        "servers": servers,
        "active": len(active),
        "errors": len(settled) - len(active),
        "boots_per_s": len(active) / max(last_active - first_create, 1e-9),
        "create_p50": percentile(latencies, 0.50),
        "create_p95": percentile(latencies, 0.95),
        "create_p99": percentile(latencies, 0.99),
        "active_p50": percentile(to_active, 0.50) if to_active else 0.0,
        "active_p99": percentile(to_active, 0.99) if to_active else 0.0,
        # None without traced requests (--trace-ratio 0): nothing was measured.
        "select_p50": percentile(select, 0.50) if select else None,
        "select_p99": percentile(select, 0.99) if select else None,
        "placement_p50": percentile(placement, 0.50) if placement else None,
        "placement_p99": percentile(placement, 0.99) if placement else None,
        "traced_selects": len(select),
        "deletes_per_s": len(active) / delete_s,
        "boot_cpu_ms": {part: ms / booted for part, ms in boot_cpu.items()},
        "delete_cpu_ms": {part: ms / booted for part, ms in delete_cpu.items()},
        "boot_steal_pct": boot_steal,
        "delete_steal_pct": cpu.steal_pct,
    }


async def measure(args, database: str, hosts: int) -> list[dict]:
    rows = []
    mesh = BenchMesh(database, hosts, trace_ratio=args.trace_ratio)
    started = time.perf_counter()
    await asyncio.to_thread(mesh.start)
    print(
        f"{database}, {hosts:,} hosts: mesh up in {time.perf_counter() - started:.0f}s", flush=True
    )
    try:
        for name in args.variants.split(","):
            for rate in [0.0, *args.rates.get(name, [])]:
                servers = args.servers.get(name, args.servers[""])
                row = await run_variant(mesh, VARIANTS[name], servers, args.clients, rate)
                row |= {"database": database, "hosts": hosts}
                print(row, flush=True)
                rows.append(row)
    finally:
        await asyncio.to_thread(mesh.stop)
    return rows


def _pair(p50: float | None, p99: float | None) -> str:
    return "n/a" if p50 is None or p99 is None else f"{p50:.1f} / {p99:.1f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| database | hosts | variant | servers (errors) | boots/s | create p50 / p95 / p99 (ms) "
        "| to ACTIVE p50 / p99 (ms) | scheduling p50 / p99 (ms/call) "
        "| placement p50 / p99 (ms/call) | deletes/s |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['database']} | {r['hosts']:,} | {r['variant']} "
            f"| {r['active']:,} ({r['errors']}) | {r['boots_per_s']:.0f} "
            f"| {r['create_p50']:.0f} / {r['create_p95']:.0f} / {r['create_p99']:.0f} "
            f"| {r['active_p50']:.0f} / {r['active_p99']:.0f} "
            f"| {_pair(r['select_p50'], r['select_p99'])} "
            f"| {_pair(r['placement_p50'], r['placement_p99'])} "
            f"| {r['deletes_per_s']:.0f} |"
        )
    return "\n".join(lines)


CPU_PARTS = (
    "api_gateway",
    "scheduler",
    "placement",
    "quota",
    "hosts",
    "envoy",
    "etcd",
    "postgresql",
)


def cpu_table(rows: list[dict]) -> str:
    """CPU milliseconds per server booted (and deleted), by part of the mesh."""
    parts = [*CPU_PARTS, CpuMeter.CLIENT]
    lines = [
        "| database | hosts | variant | phase | " + " | ".join(parts) + " | total | steal % |",
        "| --- | ---: | --- | --- | " + " | ".join("---:" for _ in parts) + " | ---: | ---: |",
    ]
    for r in rows:
        for phase in ("boot", "delete"):
            cpu = r[f"{phase}_cpu_ms"]
            lines.append(
                f"| {r['database']} | {r['hosts']:,} | {r['variant']} | {phase} | "
                + " | ".join(f"{cpu.get(p, 0.0):.2f}" for p in parts)
                + f" | {sum(cpu.values()):.2f} | {r[f'{phase}_steal_pct']:.0f} |"
            )
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate, latency) = plt.subplots(1, 2, figsize=(11, 4))
    series = sorted({(r["database"], r["variant"]) for r in rows})
    for database, variant in series:
        mine = sorted(
            (r for r in rows if (r["database"], r["variant"]) == (database, variant)),
            key=lambda r: r["hosts"],
        )
        hosts = [r["hosts"] for r in mine]
        label = f"{variant} ({database})"
        rate.plot(hosts, [r["boots_per_s"] for r in mine], marker="o", label=label)
        latency.plot(hosts, [r["create_p99"] for r in mine], marker="o", label=label)
    for axis, title in ((rate, "boots per second"), (latency, "create API p99 (ms)")):
        axis.set_xscale("log")
        axis.set_xlabel("hosts")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
    rate.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def _servers(value: str) -> dict[str, int]:
    """'10000' or '10000,single=2000': servers per variant name ('' for the rest)."""
    counts = {}
    for part in value.split(","):
        name, _, count = part.rpartition("=")
        counts[name] = int(count)
    counts.setdefault("", max(counts.values()))
    return counts


def _rates(value: str) -> dict[str, list[float]]:
    """'multi=500,multi=700': paced rates per variant name."""
    rates: dict[str, list[float]] = {}
    for part in value.split(","):
        name, _, rate = part.partition("=")
        rates.setdefault(name, []).append(float(rate))
    return rates


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1000,10000")
    parser.add_argument(
        "--servers",
        type=_servers,
        default=_servers("10000"),
        help="servers per variant: N, or N,variant=N,... to boot fewer in slow variants",
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--variants", default="single,multi,anti-affinity")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--trace-ratio", type=float, default=0.0)
    parser.add_argument(
        "--rates",
        type=_rates,
        default={},
        help="also run variants paced (open loop) at servers/s: multi=500,single=100",
    )
    parser.add_argument(
        "--quick", action="store_true", help="4 hosts, 200 servers, SQLite: a smoke run"
    )
    args = parser.parse_args()
    if args.quick:
        args.hosts, args.servers, args.databases = "4", _servers("200"), "sqlite"
    yardstick = yardstick_ms()
    rows = []
    for database in args.databases.split(","):
        for hosts in map(int, args.hosts.split(",")):
            rows += await measure(args, database, hosts)
    yardstick = (yardstick + yardstick_ms()) / 2
    print(f"yardstick (bench/edge.py): {yardstick:.0f} ms")
    report = (
        table(rows) + "\n\nCPU milliseconds per server, by part of the mesh:\n\n" + cpu_table(rows)
    )
    print(report)
    if args.quick:  # a smoke run: printed, not published
        return
    RESULTS.mkdir(exist_ok=True)
    plot(rows, RESULTS / "boot.png")
    command = " ".join(["python -m bench.boot", *sys.argv[1:]])
    (RESULTS / "boot.md").write_text(
        "# Boot benchmark\n\n"
        f"`{command}` on {os.cpu_count()} cores (yardstick {yardstick:.0f} ms, see "
        "bench/edge.py: lower is a faster machine): etcd, Envoy, every service, the simulated "
        f"hosts and the {args.clients} clients (aiohttp) share them. "
        f"Flavor {FLAVOR}; anti-affinity groups of {GROUP_SIZE}. "
        "A variant with @R/s ran open loop, creates sent at R servers/s whatever the "
        "answers (latency from each create's slot); the others closed loop, each client "
        "sending its next create once the last was answered. "
        "Boots/s: first create sent to last server ACTIVE. To ACTIVE: the server's "
        "update_time - create_time. Scheduling: SelectDestinations spans served by the "
        "scheduler; placement: the placement spans within one (candidates, claims), from "
        f"{args.trace_ratio:.0%} of requests traced (OpenTelemetry, sampled, console "
        "exporter). CPU per server: utime + stime of each process from /proc while the "
        "servers were created until none was in BUILD (boot), and while they were "
        "deleted (delete), divided by the servers; steal %: the share of the machine's "
        "CPU time its hypervisor gave to other guests meanwhile (/proc/stat), which "
        "moves every figure from run to run.\n\n"
        f"{report}\n\n![boots per second and create p99](boot.png)\n"
    )


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
