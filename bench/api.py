"""Read API benchmark: throughput through Envoy and the CPU each process spends per request.

    .venv/bin/python -m bench.api [--databases sqlite,postgresql] [--clients 8]
                                  [--seconds 10] [--servers 500]

Starts the real mesh (bench/mesh.py, two fake hosts), boots --servers servers
in one project, then for each read (list servers, a page of 100; get one
server; list flavors) runs K clients, each with its own connection and the
project's token, for a fixed time. For every process it reads utime + stime
from /proc/<pid>/stat before and after and divides by the requests served:
CPU milliseconds per request, by process (the benchmark's own client
included, as it shares the same cores). Writes bench/results/api.md and api.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import uvloop

from bench.edge import CpuMeter, EdgeClient, until_none, yardstick_ms
from bench.mesh import BenchMesh
from bench.placement import RESULTS, percentile

READS = {
    "list servers": lambda ids, i: "/v1/servers",
    "get server": lambda ids, i: f"/v1/servers/{ids[i % len(ids)]}",
    "list flavors": lambda ids, i: "/v1/flavors",
}


async def boot(http: EdgeClient, count: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        n = min(100, count - len(ids))
        reply = await http.post(
            "/v1/servers",
            {
                "server": {"name": "read", "flavor": "m1.tiny", "image_ref": "cirros"},
                "min_count": n,
                "max_count": n,
            },
        )
        ids += [s["id"] for s in reply["servers"]]
    await until_none(http, 600, status="BUILD")
    return ids


async def measure_read(
    mesh: BenchMesh, token: str, name: str, ids: list[str], clients: int, seconds: float
) -> dict:
    path_of = READS[name]
    latencies: list[float] = []
    stop_at = 0.0

    async def client(index: int) -> None:
        http = EdgeClient(mesh.rest_url, token)
        try:
            await http.get(path_of(ids, index))  # connect before the clock starts
            await ready.wait()
            i = index
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                await http.get(path_of(ids, i))
                latencies.append((time.perf_counter() - started) * 1000)
                i += clients
        finally:
            await http.close()

    ready = asyncio.Event()
    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    await asyncio.sleep(1.0)
    cpu = CpuMeter({name: [pid] for name, pid in mesh.pids().items()})
    cpu.start()
    started = time.perf_counter()
    stop_at = started + seconds
    ready.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    spent = cpu.stop()
    requests = len(latencies)
    return {
        "read": name,
        "requests_per_s": requests / elapsed,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "cpu_ms": {p: ms / requests for p, ms in spent.items()},
    }


async def measure(database: str, servers: int, clients: int, seconds: float) -> list[dict]:
    mesh = BenchMesh(database, hosts=2)
    await asyncio.to_thread(mesh.start)
    try:
        token = mesh.token(project="reader", user="reader", roles=["member"])
        http = EdgeClient(mesh.rest_url, token)
        try:
            ids = await boot(http, servers)
        finally:
            await http.close()
        rows = []
        for name in READS:
            row = await measure_read(mesh, token, name, ids, clients, seconds)
            row["database"] = database
            print(row, flush=True)
            rows.append(row)
        return rows
    finally:
        await asyncio.to_thread(mesh.stop)


def table(rows: list[dict]) -> str:
    processes = list(rows[0]["cpu_ms"])
    lines = [
        "| database | read | requests/s | p50 / p99 (ms) | "
        + " | ".join(f"{p} CPU ms/req" for p in processes)
        + " | total |",
        "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in processes) + " | ---: |",
    ]
    for r in rows:
        cpu = r["cpu_ms"]
        lines.append(
            f"| {r['database']} | {r['read']} | {r['requests_per_s']:.0f} "
            f"| {r['p50']:.1f} / {r['p99']:.1f} | "
            + " | ".join(f"{cpu[p]:.2f}" for p in processes)
            + f" | {sum(cpu.values()):.2f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    labels = [f"{r['read']}\n({r['database']})" for r in rows]
    bottom = [0.0] * len(rows)
    for process in rows[0]["cpu_ms"]:
        values = [r["cpu_ms"][process] for r in rows]
        ax.bar(labels, values, bottom=bottom, label=process)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for i, r in enumerate(rows):
        ax.annotate(f"{r['requests_per_s']:.0f}/s", (i, bottom[i]), ha="center", va="bottom")
    ax.set_ylabel("CPU ms per request")
    ax.set_title("Read API: CPU per request by process (label: requests per second)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--servers", type=int, default=500)
    args = parser.parse_args()
    yardstick = yardstick_ms()
    rows = []
    for database in args.databases.split(","):
        rows += await measure(database, args.servers, args.clients, args.seconds)
    yardstick = (yardstick + yardstick_ms()) / 2
    report = table(rows)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    plot(rows, RESULTS / "api.png")
    command = " ".join(["python -m bench.api", *sys.argv[1:]])
    (RESULTS / "api.md").write_text(
        "# Read API benchmark\n\n"
        f"`{command}` on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, yardstick "
        f"{yardstick:.0f} ms (bench/edge.py: lower is a faster machine), shared by every "
        "process and the "
        f"{args.clients} clients (one connection each, through Envoy with a JWT). "
        f"{args.servers} servers in the project; list servers returns a page of 100. "
        "CPU ms/req: utime + stime of the process over the run (/proc/<pid>/stat), "
        "divided by the requests served.\n\n"
        f"{report}\n\n![CPU per request by process](api.png)\n"
    )


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
