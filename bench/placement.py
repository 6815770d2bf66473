"""Placement benchmark: provider setup, allocation candidates and claims.

    .venv/bin/python -m bench.placement [--sizes 1000,10000] [--databases sqlite,postgresql]

For each database and size it starts a real placement process on a fresh
database and drives it over gRPC (one asyncio client process), then prints
and writes bench/results/placement.md:
  * providers created per second (create + inventories + traits: 3 calls),
  * allocation-candidate latency p50/p95 for VCPU:1,MEMORY_MB:1024,DISK_GB:10
    with limit 1000, without a limit, and with a required trait,
  * claims per second from 8 concurrent clients, and how many conflicted;
  * releases (DeleteAllocations) per second of those claims, 8 clients;
  * the CPU per claim of placement, PostgreSQL and this client, and
    placement's per release (/proc): what the code costs, which moves less
    with this shared machine's speed than the rates, and which part pays;
  * the share of the machine's CPU time its hypervisor gave to other guests
    during the run (steal, /proc/stat): it moves every figure from run to run;
and plots latency and claims/s against providers per database in
bench/results/placement.png.
Every provider has VCPU 32 at ratio 16, MEMORY_MB 131072, DISK_GB 2048;
half have HW_CPU_X86_AVX2. Client and server share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import grpc
import uvloop
from stratus.placement.v1 import allocation_candidates_pb2 as cand_pb
from stratus.placement.v1 import (
    allocation_candidates_pb2_grpc,
    allocations_pb2_grpc,
    resource_providers_pb2_grpc,
)
from stratus.placement.v1 import allocations_pb2 as alloc_pb
from stratus.placement.v1 import resource_providers_pb2 as rp_pb

from bench.edge import CpuMeter, machine_ticks, postgres_cpu_ms, steal_pct_since, yardstick_ms
from deploy.local.mesh import ROOT, start_service

METADATA = (("x-stratus-roles", "service"),)
REQUEST = {"VCPU": 1, "MEMORY_MB": 1024, "DISK_GB": 10}
INVENTORY = [
    rp_pb.Inventory(resource_class="VCPU", total=32, allocation_ratio=16.0),
    rp_pb.Inventory(resource_class="MEMORY_MB", total=131072),
    rp_pb.Inventory(resource_class="DISK_GB", total=2048),
]
PG_ADMIN = os.environ.get("STRATUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
RESULTS = ROOT / "bench" / "results"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class PlacementProcess:
    """A placement server on a fresh database, stopped on exit."""

    def __init__(self, database: str) -> None:
        self.database = database

    async def __aenter__(self):
        self.state = tempfile.TemporaryDirectory(prefix="bench-placement-")
        url = ""
        if self.database == "postgresql":
            self.pg_name = f"stratus_bench_{uuid.uuid4().hex[:8]}"
            conn = await asyncpg.connect(PG_ADMIN)
            await conn.execute(f'CREATE DATABASE "{self.pg_name}"')
            await conn.close()
            url = PG_ADMIN.rsplit("/", 1)[0] + f"/{self.pg_name}"
        env = dict(
            os.environ,
            STRATUS_STATE_DIR=self.state.name,
            STRATUS_PLACEMENT__DATABASE_URL=url,
            STRATUS_LOG_LEVEL="WARNING",
        )
        self.proc, self.address = start_service("placement", env)
        return self

    async def __aexit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        if self.database == "postgresql":
            conn = await asyncpg.connect(PG_ADMIN)
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
            await conn.close()
        self.state.cleanup()


async def create_providers(channel, count: int, concurrency: int = 16) -> tuple[list[str], float]:
    stub = resource_providers_pb2_grpc.ResourceProviderServiceStub(channel)
    limit = asyncio.Semaphore(concurrency)
    uuids: list[str] = []

    async def one(i: int) -> None:
        async with limit:
            rp = await stub.CreateResourceProvider(
                rp_pb.CreateResourceProviderRequest(
                    resource_provider=rp_pb.ResourceProvider(name=f"host-{i:05d}")
                ),
                metadata=METADATA,
            )
            await stub.ReplaceInventories(
                rp_pb.ReplaceInventoriesRequest(
                    uuid=rp.uuid, resource_provider_generation=0, inventories=INVENTORY
                ),
                metadata=METADATA,
            )
            if i % 2 == 0:
                await stub.SetProviderTraits(
                    rp_pb.SetProviderTraitsRequest(
                        uuid=rp.uuid, resource_provider_generation=1, traits=["HW_CPU_X86_AVX2"]
                    ),
                    metadata=METADATA,
                )
            uuids.append(rp.uuid)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return uuids, count / (time.perf_counter() - started)


async def candidate_latency(channel, runs: int, **query) -> tuple[float, float, int]:
    stub = allocation_candidates_pb2_grpc.AllocationCandidateServiceStub(channel)
    request = cand_pb.ListAllocationCandidatesRequest(resources=REQUEST, **query)
    found = 0
    for _ in range(2):  # warm caches
        found = len(
            (await stub.ListAllocationCandidates(request, metadata=METADATA)).allocation_requests
        )
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await stub.ListAllocationCandidates(request, metadata=METADATA)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), percentile(samples, 0.95), found


async def claim_rate(
    channel, providers: list[str], total: int, clients: int = 8
) -> tuple[float, int, list[str]]:
    """Claims per second, conflicts, and the consumers that hold a claim."""
    stub = allocations_pb2_grpc.AllocationServiceStub(channel)
    conflicts = 0
    remaining = total
    claimed: list[str] = []

    async def client() -> None:
        nonlocal conflicts, remaining
        while remaining > 0:
            remaining -= 1
            consumer = str(uuid.uuid4())
            request = alloc_pb.PutAllocationsRequest(
                consumer_uuid=consumer,
                project_id="bench",
                user_id="bench",
                allocations=[
                    alloc_pb.Allocation(
                        resource_provider_uuid=random.choice(providers), resources=REQUEST
                    )
                ],
            )
            try:
                await stub.PutAllocations(request, metadata=METADATA)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.ABORTED:
                    raise
                conflicts += 1
            else:
                claimed.append(consumer)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return (total - conflicts) / (time.perf_counter() - started), conflicts, claimed


async def release_rate(channel, consumers: list[str], clients: int = 8) -> float:
    """Releases per second: every consumer's allocations deleted, 8 at a time."""
    stub = allocations_pb2_grpc.AllocationServiceStub(channel)
    pending = iter(consumers)

    async def client() -> None:
        for consumer in pending:
            await stub.DeleteAllocations(
                alloc_pb.DeleteAllocationsRequest(consumer_uuid=consumer), metadata=METADATA
            )

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(consumers) / (time.perf_counter() - started)


async def measure(database: str, size: int, claims: int) -> dict:
    async with (
        PlacementProcess(database) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        ticks_before = machine_ticks()
        providers, created_per_s = await create_providers(channel, size)
        runs = 30
        limited = await candidate_latency(channel, runs, limit=1000)
        unlimited = await candidate_latency(channel, max(5, runs // (size // 1000 or 1)))
        traited = await candidate_latency(
            channel, runs, limit=1000, required_traits=["HW_CPU_X86_AVX2"]
        )
        # Claims land on the first hosts a scheduler would see: a limited candidate list.
        # Where a claim's CPU goes: placement, PostgreSQL (about none on SQLite), this client.
        meter = CpuMeter({"placement": [server.proc.pid], "postgresql": postgres_cpu_ms})
        meter.start()
        claims_per_s, conflicts, claimed = await claim_rate(channel, providers[:1000], claims)
        claim_cpu = meter.stop()
        meter = CpuMeter({"placement": [server.proc.pid]})
        meter.start()
        releases_per_s = await release_rate(channel, claimed)
        release_cpu = meter.stop()
        steal_pct = steal_pct_since(ticks_before)
    return {
        "database": database,
        "providers": size,
        "created_per_s": created_per_s,
        "limit": limited,
        "unlimited": unlimited,
        "trait": traited,
        "claims_per_s": claims_per_s,
        "conflicts": conflicts,
        "claims": claims,
        "releases_per_s": releases_per_s,
        # CPU per call: what the code costs, less moved by the machine's
        # speed than the rates are.
        "claim_cpu_ms": [
            claim_cpu[part] / claims for part in ("placement", "postgresql", CpuMeter.CLIENT)
        ],
        "release_cpu_ms": release_cpu["placement"] / max(1, len(claimed)),
        "steal_pct": steal_pct,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| database | providers | providers created/s | candidates limit 1000 p50 / p95 (ms) | "
        "no limit p50 / p95 (ms) [found] | required trait p50 / p95 (ms) | "
        "claims/s (8 clients) | conflicts | releases/s (8 clients) | "
        "CPU per claim: placement / PostgreSQL / client (ms) | placement CPU per release (ms) | "
        "steal % |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['database']} | {r['providers']:,} | {r['created_per_s']:.0f} | "
            f"{r['limit'][0]:.1f} / {r['limit'][1]:.1f} | "
            f"{r['unlimited'][0]:.1f} / {r['unlimited'][1]:.1f} [{r['unlimited'][2]:,}] | "
            f"{r['trait'][0]:.1f} / {r['trait'][1]:.1f} | {r['claims_per_s']:.0f} | "
            f"{r['conflicts']} of {r['claims']} | {r['releases_per_s']:.0f} | "
            f"{' / '.join(f'{ms:.2f}' for ms in r['claim_cpu_ms'])} | {r['release_cpu_ms']:.2f} | "
            f"{r['steal_pct']:.0f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> None:
    """Candidate latency (p50) and claims/s against providers, one line per database."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, (latency, claims) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, database in enumerate(dict.fromkeys(r["database"] for r in rows)):
        color = f"C{i}"
        mine = sorted((r for r in rows if r["database"] == database), key=lambda r: r["providers"])
        sizes = [r["providers"] for r in mine]
        for key, label, style in (
            ("limit", "limit 1000", "-o"),
            ("trait", "required trait", "--s"),
            ("unlimited", "no limit", ":^"),
        ):
            latency.plot(
                sizes, [r[key][0] for r in mine], style, color=color, label=f"{database}, {label}"
            )
        claims.plot(sizes, [r["claims_per_s"] for r in mine], "-o", color=color, label=database)
    latency.axhline(20, color="grey", linewidth=0.8)
    latency.annotate("target p50, limit 1000", (rows[0]["providers"], 20), fontsize=8)
    claims.axhline(1000, color="grey", linewidth=0.8)
    claims.annotate("target", (rows[0]["providers"], 1000), fontsize=8)
    for ax in (latency, claims):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("resource providers")
        ax.legend(fontsize=7)
    latency.set_yscale("log")
    latency.yaxis.set_minor_formatter(ScalarFormatter())
    latency.set_ylabel("allocation candidates p50 (ms)")
    claims.set_ylabel("claims/s (8 clients)")
    claims.set_ylim(bottom=0)
    fig.suptitle(f"Placement on {os.cpu_count()} cores (client and server share them)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--claims", type=int, default=10000)
    args = parser.parse_args()
    yardstick = yardstick_ms()
    rows = []
    for database in args.databases.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            row = await measure(database, size, args.claims)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
    yardstick = (yardstick + yardstick_ms()) / 2
    report = table(rows)
    print("\n" + report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.placement " + " ".join(sys.argv[1:])
    plot(rows, RESULTS / "placement.png")
    Path(RESULTS / "placement.md").write_text(
        f"# Placement benchmark\n\n`{command.strip()}` on {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d')}; yardstick {yardstick:.0f} ms (bench/edge.py: lower "
        "is a faster machine).\n\n"
        f"{report}\n\n"
        "![Candidate latency and claims/s against providers](placement.png)\n"
    )


if __name__ == "__main__":
    uvloop.run(main())
