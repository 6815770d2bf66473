"""Idle benchmark: what a mesh of N hosts costs while nobody calls it.

    .venv/bin/python -m bench.idle [--sizes 1000,10000] [--seconds 30]
                                   [--database sqlite] [--label after]

For each size it starts the real mesh (bench/mesh.py: etcd, Envoy, placement,
quota, scheduler, api_gateway, and the fleet simulator's processes holding
the hosts) and times how long until every host is in placement and etcd.
It then waits a settling period (the fleet's first sweeps, the reconciler's
first passes), and reads every process's CPU time before and after --seconds
of idleness: the figures are % of one core. Whatever a process burns here is
paid all the time, and at 10,000 hosts it takes the cores that boots need.

It prints a table and keeps it in bench/results/idle.md under --label,
replacing an earlier table of the same label, so the file holds before and
after side by side.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from datetime import date
from pathlib import Path

from bench.edge import CpuMeter, postgres_cpu_ms
from bench.mesh import CORE, BenchMesh
from bench.placement import RESULTS

# The fleet's first inventory sweep and the reconciler's first pass (every
# 10 s) land here, not in the measured window.
SETTLE_S = 15.0
FLEET = "fleet simulators"


def measure(database: str, hosts: int, seconds: float) -> dict:
    started = time.monotonic()
    with BenchMesh(database, hosts=hosts) as mesh:
        start_s = time.monotonic() - started
        print(f"{hosts:>6} hosts: mesh up, every host registered, in {start_s:.0f} s", flush=True)
        time.sleep(SETTLE_S)
        parts: dict = {name: [pid] for name, pid in mesh.pids().items()}
        parts[FLEET] = mesh.host_pids()
        if database == "postgresql":
            parts["postgresql"] = postgres_cpu_ms
        meter = CpuMeter(parts)
        meter.start()
        time.sleep(seconds)
        spent = meter.stop()
    cpu = {name: 100 * ms / (seconds * 1000) for name, ms in spent.items() if name != meter.CLIENT}
    print(
        f"{hosts:>6} hosts, idle CPU (% of a core): "
        + ", ".join(f"{name} {value:.1f}" for name, value in cpu.items())
        + f"; total {sum(cpu.values()):.1f}",
        flush=True,
    )
    return {"hosts": hosts, "start_s": start_s, "cpu": cpu}


def table(rows: list[dict]) -> str:
    names = [*CORE, FLEET] + (["postgresql"] if "postgresql" in rows[0]["cpu"] else [])
    lines = [
        "| hosts | mesh start (s) | " + " | ".join(names) + " | total |",
        "| ---: | ---: | " + " | ".join("---:" for _ in names) + " | ---: |",
    ]
    for r in rows:
        cells = " | ".join(f"{r['cpu'][n]:.1f}%" for n in names)
        total = sum(r["cpu"].values())
        lines.append(f"| {r['hosts']:,} | {r['start_s']:.0f} | {cells} | {total:.1f}% |")
    return "\n".join(lines)


def keep_section(path: Path, label: str, body: str) -> None:
    """Write `body` under `## <label>` in the results file, replacing that section only."""
    header = (
        "# Idle benchmark\n\n"
        "CPU of each process (% of one core) over a window in which nothing calls the "
        "mesh, after every host registered; `mesh start` is the time from nothing to "
        "every host in placement and etcd. See bench/idle.py.\n"
    )
    text = path.read_text() if path.exists() else header
    section = f"## {label}\n\n{body}\n"
    pattern = re.compile(rf"^## {re.escape(label)}\n.*?(?=^## |\Z)", re.M | re.S)
    text = (
        pattern.sub(lambda _: section + "\n", text, count=1)
        if pattern.search(text)
        else (text.rstrip("\n") + "\n\n" + section)
    )
    path.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="hosts, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0, help="idle window measured")
    parser.add_argument("--database", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--label", default="current", help="section of results/idle.md")
    args = parser.parse_args()
    rows = [measure(args.database, int(s), args.seconds) for s in args.sizes.split(",")]
    command = "python -m bench.idle " + shlex.join(sys.argv[1:])
    body = (
        f"`{command.strip()}` on {os.cpu_count()} cores, {args.database}, "
        f"{date.today().isoformat()}.\n\n" + table(rows)
    )
    RESULTS.mkdir(exist_ok=True)
    keep_section(RESULTS / "idle.md", args.label, body)
    print(table(rows))
    print(f"wrote {RESULTS / 'idle.md'} ({args.label})")


if __name__ == "__main__":
    main()
