"""Scheduler benchmark: cost and quality of a decision against the sample size.

    .venv/bin/python -m bench.scheduler [--sizes 1000,10000] [--samples 10,50,200,0]

For each host count it starts a real placement (SQLite) and etcd, creates the
hosts (provider + inventory in placement, liveness key in etcd), fills them
with random usage, then for each sample size starts a scheduler and measures:
  * decision latency p50/p95 (one instance, sequential, claim included),
  * decisions per second with 8 concurrent clients,
  * quality: the chosen host's free RAM over the best free RAM of any host
    (1.00 = the best host there is). The VCPU weigher is off here so that RAM
    spreading is the whole objective; host_subset_size stays at its default
    (a random pick among the best 3), which by design costs some quality.
Sample 0 means every candidate (no sampling). Writes bench/results/scheduler.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aetcd
import grpc
import uvloop
from stratus.placement.v1 import allocations_pb2 as alloc_pb
from stratus.placement.v1 import allocations_pb2_grpc
from stratus.scheduler.v1 import scheduler_pb2 as pb
from stratus.scheduler.v1 import scheduler_pb2_grpc

from bench.edge import yardstick_ms
from bench.placement import METADATA, RESULTS, PlacementProcess, create_providers, percentile
from deploy.local.mesh import start_service
from tests.etcd_server import EtcdServer

HOST_RAM = 131072
REQUEST = {"VCPU": 1, "MEMORY_MB": 2048}


async def register_hosts(etcd: str, providers: list[str]) -> None:
    host, port = etcd.split(":")
    async with aetcd.Client(host, int(port)) as client:
        for i, provider in enumerate(providers):
            value = {
                "host": f"host-{i:05d}",
                "address": "127.0.0.1:1",
                "provider_uuid": provider,
                "availability_zone": "default",
                "driver": "simulated",
            }
            await client.put(f"/stratus/hosts/host-{i:05d}".encode(), json.dumps(value).encode())


async def fill(channel, providers: list[str], rng: random.Random) -> dict[str, int]:
    """Random memory use on every host (0-96 GiB); returns free RAM per provider."""
    stub = allocations_pb2_grpc.AllocationServiceStub(channel)
    free = {}
    limit = asyncio.Semaphore(16)

    async def one(provider: str) -> None:
        used = rng.randrange(0, 96) * 1024
        free[provider] = HOST_RAM - used
        if not used:
            return
        async with limit:
            await stub.PutAllocations(
                alloc_pb.PutAllocationsRequest(
                    consumer_uuid=str(uuid.uuid4()),
                    project_id="fill",
                    user_id="fill",
                    allocations=[
                        alloc_pb.Allocation(
                            resource_provider_uuid=provider, resources={"MEMORY_MB": used}
                        )
                    ],
                ),
                metadata=METADATA,
            )

    await asyncio.gather(*(one(p) for p in providers))
    return free


def request() -> pb.SelectDestinationsRequest:
    return pb.SelectDestinationsRequest(
        instance_ids=[str(uuid.uuid4())], project_id="bench", user_id="bench", resources=REQUEST
    )


async def measure_sample(env: dict, free: dict[str, int], sample: int, decisions: int) -> dict:
    proc, address = start_service(
        "scheduler",
        env
        | {
            "STRATUS_SCHEDULER__CANDIDATE_SAMPLE_SIZE": str(sample or 100000),
            "STRATUS_SCHEDULER__VCPU_WEIGHT_MULTIPLIER": "0",
        },
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
            await stub.SelectDestinations(request(), metadata=METADATA)  # warm-up
            latencies, quality = [], []
            for _ in range(decisions):
                best = max(free.values())
                started = time.perf_counter()
                reply = await stub.SelectDestinations(request(), metadata=METADATA)
                latencies.append((time.perf_counter() - started) * 1000)
                chosen = reply.selections[0].destination.resource_provider_uuid
                quality.append(free[chosen] / best)
                free[chosen] -= REQUEST["MEMORY_MB"]

            async def client(n: int) -> None:
                for _ in range(n):
                    reply = await stub.SelectDestinations(request(), metadata=METADATA)
                    free[reply.selections[0].destination.resource_provider_uuid] -= 2048

            started = time.perf_counter()
            await asyncio.gather(*(client(decisions // 8) for _ in range(8)))
            rate = (decisions // 8 * 8) / (time.perf_counter() - started)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "sample": sample or "all",
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "rate": rate,
        "quality": statistics.mean(quality),
        "worst": min(quality),
    }


async def measure(size: int, samples: list[int], decisions: int) -> list[dict]:
    rng = random.Random(size)
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        etcd = EtcdServer(Path(tmp) / "etcd", Path(tmp) / "etcd.log")
        etcd.start()
        try:
            async with PlacementProcess("sqlite") as placement:
                async with grpc.aio.insecure_channel(placement.address) as channel:
                    providers, _ = await create_providers(channel, size)
                    free = await fill(channel, providers, rng)
                await register_hosts(etcd.endpoint, providers)
                env = dict(
                    os.environ,
                    STRATUS_STATE_DIR=tmp,
                    STRATUS_LOG_LEVEL="WARNING",
                    STRATUS_PLACEMENT__LISTEN=placement.address,
                    STRATUS_ETCD_ENDPOINTS=etcd.endpoint,
                )
                rows = []
                for sample in samples:
                    row = await measure_sample(env, free, sample, decisions)
                    row["hosts"] = size
                    print(row, flush=True)
                    rows.append(row)
                return rows
        finally:
            etcd.stop()


def table(rows: list[dict]) -> str:
    lines = [
        "| hosts | sample | decision p50 / p95 (ms) | decisions/s, 8 clients "
        "| quality mean / worst |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['hosts']:,} | {r['sample']} | {r['p50']:.1f} / {r['p95']:.1f} "
            f"| {r['rate']:.0f} | {r['quality']:.3f} / {r['worst']:.3f} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--samples", default="10,50,200,0")
    parser.add_argument("--decisions", type=int, default=200)
    args = parser.parse_args()
    yardstick = yardstick_ms()
    rows = []
    for size in map(int, args.sizes.split(",")):
        rows += await measure(size, [int(s) for s in args.samples.split(",")], args.decisions)
    yardstick = (yardstick + yardstick_ms()) / 2
    report = table(rows)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scheduler.md").write_text(
        "# Scheduler benchmark\n\n"
        f"`python -m bench.scheduler --sizes {args.sizes} --samples {args.samples}` on "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, yardstick {yardstick:.0f} ms "
        "(bench/edge.py: lower is a faster machine; client, scheduler, placement and etcd "
        "share the cores); "
        "placement on SQLite. Quality = chosen host's free RAM / best free RAM of all hosts "
        "(VCPU weigher off, so free RAM is the whole objective; best-3 random pick on).\n\n"
        f"{report}\n"
    )


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
