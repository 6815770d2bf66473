"""Liveness benchmark: how soon dead hosts are noticed, and what live ones cost etcd.

    .venv/bin/python -m bench.liveness [--sizes 1000,10000] [--ttls 5,10,15] [--crash-share 0.01]

For each size it starts etcd and placement (the mesh's own commands, on free
ports, SQLite) and, for each TTL, a fleet of simulated hosts
(deploy/local/fleet.py, one process per 2,500 hosts) renewing their leases
every TTL/3; once every host is in placement and etcd:
  * load: for 20 s, lease renewals per second as etcd counts them
    (etcd_debugging_lease_renewed_total) and etcd's CPU% (of one core);
  * detection: it crashes a share of the hosts at once (chosen at random; their
    keepalives stop, nothing is revoked, as when machines die) and times, for
    each, the crash call to the deletion of its key as seen by a watcher
    (services.common.liveness.HostLiveness, what scheduler and api_gateway use);
    a surviving host that vanished meanwhile (a lease that lapsed under load)
    is counted as a false death.
It prints the figures and writes bench/results/liveness.md and liveness.png.
The fleet is restarted for each TTL, reusing its providers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path

from bench.edge import yardstick_ms
from bench.placement import percentile
from deploy.local.fleet import Fleet
from deploy.local.mesh import ROOT, MeshLayout, process_env, start_service
from services.common.liveness import HostLiveness

RESULTS = ROOT / "bench" / "results"
LOAD_WINDOW_S = 20.0
HOSTS_PER_PROCESS = 2500


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lease_renewals(etcd: str) -> float:
    """etcd's own count of lease keepalives it has handled."""
    with urllib.request.urlopen(f"http://{etcd}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("etcd_debugging_lease_renewed_total"):
                return float(line.split()[-1])
    raise RuntimeError("etcd does not export etcd_debugging_lease_renewed_total")


class EtcdAndPlacement:
    """What simulated hosts need: etcd (the Procfile's command) and placement on SQLite."""

    def __enter__(self) -> EtcdAndPlacement:
        self._state = tempfile.TemporaryDirectory(prefix="bench-liveness-")
        self.layout = MeshLayout.on_free_ports(Path(self._state.name))
        self.env = process_env(self.layout) | {"STRATUS_LOG_LEVEL": "WARNING"}
        self.logs = Path(self._state.name) / "logs"
        self.logs.mkdir()
        etcd_cmd = self.layout.procfile_commands()["etcd"]
        with open(self.logs / "etcd.log", "ab") as log:
            # The Procfile line execs etcd, so this pid is etcd's.
            self.etcd = subprocess.Popen(
                etcd_cmd, shell=True, cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
        self.etcd_address = self.layout.address("etcd")
        deadline = time.monotonic() + 30
        while True:
            try:
                lease_renewals(self.etcd_address)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with open(self.logs / "placement.log", "ab") as log:
            self.placement, address = start_service(
                "placement", self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.env["STRATUS_PLACEMENT__LISTEN"] = address
        return self

    def __exit__(self, *exc) -> None:
        for proc in (self.placement, self.etcd):
            proc.terminate()
            proc.wait(timeout=30)
        self._state.cleanup()


async def detect(fleet: Fleet, etcd: str, victims: list[str], ttl: int) -> tuple[list[float], int]:
    """Crash `victims` at once; (seconds until each key's deletion was seen, false deaths)."""
    liveness = HostLiveness(etcd)
    await liveness.start()
    try:
        await liveness.wait_for(lambda: len(liveness.alive()) == len(fleet.names))
        gone: dict[str, float] = {}

        def all_gone() -> bool:
            now = time.monotonic()
            for victim in victims:
                if victim not in gone and not liveness.is_alive(victim):
                    gone[victim] = now - crashed_at
            return len(gone) == len(victims)

        crashed_at = time.monotonic()
        # A blocking call: the watch's events queue until it returns, and are
        # timed by the watcher's predicate right after (at most the call's few ms late).
        await asyncio.to_thread(fleet.crash, victims)
        async with asyncio.timeout(ttl + 10):
            await liveness.wait_for(all_gone)
        # Survivors all still alive a renewal interval later: none lapsed under load.
        await asyncio.sleep(ttl / 3)
        false_deaths = len(fleet.names) - len(victims) - len(liveness.alive())
        return sorted(gone.values()), false_deaths
    finally:
        await liveness.stop()


def measure(base: EtcdAndPlacement, size: int, ttl: int, share: float) -> dict:
    env = base.env | {"STRATUS_HOSTAGENT__LIVENESS_TTL_S": str(ttl)}
    processes = max(1, size // HOSTS_PER_PROCESS)
    fleet = Fleet(env, hosts=size, processes=processes, logs=base.logs)
    fleet.start()
    try:
        registered_s = fleet.wait_registered(timeout=1800)
        etcd_pid = base.etcd.pid
        cpu0, renewals0, started = (
            cpu_seconds(etcd_pid),
            lease_renewals(base.etcd_address),
            time.monotonic(),
        )
        fleet_cpu0 = sum(cpu_seconds(p.pid) for p in fleet.processes)
        time.sleep(LOAD_WINDOW_S)
        elapsed = time.monotonic() - started
        load = {
            "keepalives_per_s": (lease_renewals(base.etcd_address) - renewals0) / elapsed,
            "etcd_cpu": 100 * (cpu_seconds(etcd_pid) - cpu0) / elapsed,
            "fleet_cpu": 100
            * (sum(cpu_seconds(p.pid) for p in fleet.processes) - fleet_cpu0)
            / elapsed,
        }
        victims = random.Random(size * 100 + ttl).sample(fleet.names, max(1, round(size * share)))
        times, false_deaths = asyncio.run(detect(fleet, base.etcd_address, victims, ttl))
    finally:
        fleet.stop()
    row = {
        "hosts": size,
        "processes": processes,
        "ttl": ttl,
        "registered_s": registered_s,
        "crashed": len(victims),
        "p50": percentile(times, 0.5),
        "p95": percentile(times, 0.95),
        "max": times[-1],
        "within": sum(t <= ttl + 1 for t in times),
        "false_deaths": false_deaths,
        "times": times,
        **load,
    }
    print(
        f"{size:>6} hosts, ttl {ttl:>2} s: detection p50 {row['p50']:.2f} s, p95 "
        f"{row['p95']:.2f} s, max {row['max']:.2f} s ({row['within']}/{len(victims)} within "
        f"TTL+1 s, {false_deaths} false deaths); {row['keepalives_per_s']:.0f} keepalives/s, "
        f"etcd {row['etcd_cpu']:.0f}% CPU, simulators {row['fleet_cpu']:.0f}% CPU; "
        f"registered in {registered_s:.0f} s",
        flush=True,
    )
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| hosts | TTL (s) | renewal (s) | crashed | detection p50 / p95 / max (s) "
        "| within TTL+1 s | false deaths | keepalives/s (etcd) | etcd CPU | simulators' CPU |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['hosts']:,} | {r['ttl']} | {r['ttl'] / 3:.2f} | {r['crashed']} "
            f"| {r['p50']:.2f} / {r['p95']:.2f} / {r['max']:.2f} "
            f"| {r['within']} of {r['crashed']} | {r['false_deaths']} "
            f"| {r['keepalives_per_s']:,.0f} | {r['etcd_cpu']:.0f}% | {r['fleet_cpu']:.0f}% |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in rows:
        label = f"{r['hosts']:,} hosts, TTL {r['ttl']} s"
        left.plot(
            r["times"], [(i + 1) / len(r["times"]) for i in range(len(r["times"]))], label=label
        )
    for ttl in sorted({r["ttl"] for r in rows}):
        left.axvline(ttl + 1, color="grey", linestyle=":", linewidth=1)
    left.set_xlabel("crash to key deletion seen by a watcher (s); dotted: TTL + 1 s")
    left.set_ylabel("share of crashed hosts detected")
    left.set_title("Detection of crashed hosts")
    left.legend(fontsize=8)
    big = sorted(
        (r for r in rows if r["hosts"] == max(x["hosts"] for x in rows)), key=lambda r: r["ttl"]
    )
    ttls = [r["ttl"] for r in big]
    right.plot(ttls, [r["keepalives_per_s"] for r in big], "o-", label="keepalives/s")
    right.set_xlabel("lease TTL (s), renewal every TTL/3")
    right.set_ylabel("keepalives per second (etcd)")
    cpu = right.twinx()
    cpu.plot(ttls, [r["etcd_cpu"] for r in big], "s--", color="tab:red", label="etcd CPU %")
    cpu.set_ylabel("etcd CPU (% of one core)")
    right.set_title(f"etcd load at {big[0]['hosts']:,} hosts" if big else "etcd load")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="fleet sizes, comma-separated")
    parser.add_argument("--ttls", default="5,10,15", help="lease TTLs (s), comma-separated")
    parser.add_argument("--crash-share", type=float, default=0.01, help="share crashed at once")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    ttls = [int(t) for t in args.ttls.split(",")]
    yardstick = yardstick_ms()
    rows = []
    for size in sizes:
        with EtcdAndPlacement() as base:
            rows += [measure(base, size, ttl, args.crash_share) for ttl in ttls]
    yardstick = (yardstick + yardstick_ms()) / 2
    command = "python -m bench.liveness " + shlex.join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    plot(rows, RESULTS / "liveness.png")
    (RESULTS / "liveness.md").write_text(
        "# Liveness benchmark\n\n"
        f"`{command.strip()}` on {os.cpu_count()} cores, {date.today().isoformat()}, "
        f"yardstick {yardstick:.0f} ms (bench/edge.py: lower is a faster machine); "
        "etcd, placement (SQLite) and the simulators share the machine.\n\n"
        + table(rows)
        + "\n\n![detection times and etcd load](liveness.png)\n"
    )
    print(table(rows))
    print(f"wrote {RESULTS / 'liveness.md'} and {RESULTS / 'liveness.png'}")


if __name__ == "__main__":
    main()
