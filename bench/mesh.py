"""The real mesh, started for a benchmark: a fresh database each run, N hosts.

    with BenchMesh("sqlite", hosts=1000, logs=Path("/tmp/x")) as mesh:
        mesh.rest_url, mesh.token(...), mesh.pids()

etcd, Envoy, placement, quota, scheduler and api_gateway run from the
Procfile's own lines (deploy/local/mesh.py), on free ports; PostgreSQL gets
one new database per service, dropped at the end (as tests/conftest.py does).
Hosts are the fleet simulator (deploy/local/fleet.py: many fake hosts per
process, each with its own provider and lease) when it is available, else
real fake-driver host agents, one process each (fine for a handful).

Quotas are unlimited: a benchmark measures the build path, not refusals.
Tracing, when asked for, has the core services print a sample of their
spans to their logs (read back by bench/spans.py).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg

from deploy.local.mesh import (
    ROOT,
    SEED_IDENTITY,
    MeshLayout,
    not_ready,
    process_env,
    seed_flavors,
    start_service,
)

PG_ADMIN = os.environ.get("STRATUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
CORE = ("etcd", "envoy", "placement", "quota", "scheduler", "api_gateway")
TRACED = ("placement", "quota", "scheduler", "api_gateway")
DATABASE_SERVICES = ("api_gateway", "placement", "quota")
UNLIMITED = {
    f"STRATUS_QUOTA__DEFAULT_{limit}": "-1"
    for limit in ("INSTANCES", "CORES", "RAM_MB", "SERVER_GROUPS", "SERVER_GROUP_MEMBERS")
}
# Real agents, one process each: past this many, only the simulator is reasonable.
MAX_AGENT_PROCESSES = 8
# Simulated hosts per simulator process. With their leases renewed over one
# HTTP/2 stream per process, 10,000 idle hosts in one process take 2-3% of a
# core (results/idle.md); at
# 10,000 hosts and 500 boots/s one process cost 0.31 ms of CPU per server,
# two 0.33-0.43 and five 0.48-0.50 (interleaved runs, SQLite): the spawns
# and destroys spread over more processes share fewer event-loop wakeups,
# and the processes only compete for the same 2 cores.
HOSTS_PER_SIMULATOR = 10_000


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _fleet_class():
    try:
        from deploy.local.fleet import Fleet
    except ImportError:
        return None
    return Fleet


class BenchMesh:
    def __init__(
        self,
        database: str,
        hosts: int,
        logs: Path | None = None,
        *,
        trace_ratio: float = 0.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database = database
        self.hosts = hosts
        self._state = tempfile.TemporaryDirectory(prefix=f"bench-mesh-{database}-")
        # Outside the state directory, so a failed run's logs stay to be read.
        self.logs = logs or Path(tempfile.mkdtemp(prefix=f"bench-logs-{database}-"))
        self.layout = MeshLayout.on_free_ports(Path(self._state.name))
        self.layout.with_libvirt = False
        self._trace_ratio = trace_ratio
        self._extra_env = env or {}
        self.processes: dict[str, subprocess.Popen] = {}
        self._pg_names: list[str] = []
        self._fleet = None

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> BenchMesh:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        # Its processes run in sessions of their own, out of reach of a Ctrl-C
        # at the terminal: however this program ends (an interrupt, an error
        # in a thread), they are stopped on the way out.
        atexit.register(self.stop)
        if self.database == "postgresql":
            for service in DATABASE_SERVICES:
                name = f"stratus_bench_{service}_{uuid.uuid4().hex[:8]}"
                asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
                self._pg_names.append(name)
                self.layout.database_urls[service] = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
        self.layout.prepare()
        self.logs.mkdir(parents=True, exist_ok=True)
        commands = self.layout.procfile_commands()
        for name in CORE:
            self._launch(name, commands[name], self._service_env(name))
        self._wait_core()
        seed_flavors(self.layout)
        self._start_hosts()

    def _service_env(self, name: str) -> dict[str, str]:
        env = process_env(self.layout) | UNLIMITED | self._extra_env
        env.setdefault("STRATUS_LOG_LEVEL", "WARNING")
        if self._trace_ratio and name in TRACED:
            env |= {
                "STRATUS_TELEMETRY__EXPORTER": "console",
                # Read by the OpenTelemetry SDK: a share of the requests is traced,
                # and the calls they cause follow their parent's decision.
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": str(self._trace_ratio),
                "OTEL_BSP_SCHEDULE_DELAY": "500",
            }
        return env

    def _launch(self, name: str, cmd: str, env: dict[str, str]) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                cmd,
                shell=True,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_core(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            # The Procfile's own host agents are not started: the hosts are ours.
            waiting = [p for p in not_ready(self.layout) if not p.startswith("hostagent")]
            if not waiting:
                return
            dead = [n for n, p in self.processes.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                parts = ", ".join(dead or waiting)
                raise RuntimeError(f"mesh not ready ({parts}); see {self.logs}")
            time.sleep(0.2)

    def _start_hosts(self) -> None:
        env = process_env(self.layout) | {"STRATUS_LOG_LEVEL": "WARNING"}
        fleet = _fleet_class()
        if fleet is not None:
            processes = 1 + (self.hosts - 1) // HOSTS_PER_SIMULATOR
            self._fleet = fleet(env, hosts=self.hosts, processes=processes, logs=self.logs)
            self._fleet.start()
            self._fleet.wait_registered(timeout=900)
            return
        if self.hosts > MAX_AGENT_PROCESSES:
            raise SystemExit(
                f"{self.hosts} hosts need the fleet simulator (deploy/local/fleet.py); "
                f"without it at most {MAX_AGENT_PROCESSES} host agent processes are started"
            )
        for i in range(self.hosts):
            name = f"host-{i:05d}"
            with open(self.logs / f"{name}.log", "ab") as log:
                proc, _ = start_service(
                    "hostagent",
                    env | {"STRATUS_HOSTAGENT__HOST": name},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.processes[name] = proc
        self.wait_hosts(self.hosts)

    def wait_hosts(self, count: int, timeout: float = 60.0) -> None:
        """Until `count` hosts are UP with their capacity in placement (for a few
        agents: /v1/hosts asks placement about every host)."""
        deadline = time.monotonic() + timeout
        while True:
            hosts = self._hosts()
            ready = [h for h in hosts if h.get("status") == "UP" and h.get("resources")]
            if len(ready) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ready)} of {count} hosts ready after {timeout:.0f}s")
            time.sleep(1.0)

    def _hosts(self) -> list[dict]:
        request = urllib.request.Request(
            f"{self.rest_url}/v1/hosts",
            headers={"authorization": f"Bearer {self.token(**SEED_IDENTITY)}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response).get("hosts", [])
        except OSError:
            return []

    def stop(self) -> None:
        if self._fleet is not None:
            self._fleet.stop()
            self._fleet = None
        # The services first, etcd once they are gone: stopped together, the
        # services' logs filled with etcd errors from their last seconds.
        last = {name: proc for name, proc in self.processes.items() if name == "etcd"}
        first = {name: proc for name, proc in self.processes.items() if name not in last}
        for wave in (first, last):
            for proc in wave.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in wave.values():
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.processes.clear()
        for name in self._pg_names:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._pg_names.clear()
        self._state.cleanup()
        atexit.unregister(self.stop)

    # -- what benchmarks use -----------------------------------------------------

    @property
    def rest_url(self) -> str:
        return self.layout.rest_url

    def token(self, *, project: str | None, user: str | None, roles) -> str:
        return self.layout.mint_token(
            project=project, user=user, roles=roles, ttl=timedelta(hours=4)
        )

    def service_logs(self) -> list[Path]:
        return [self.logs / f"{name}.log" for name in TRACED]

    def pids(self) -> dict[str, int]:
        """The core processes by name (each Procfile line execs, so these are the servers)."""
        return {name: self.processes[name].pid for name in CORE}

    def host_pids(self) -> list[int]:
        """The processes that serve the hosts: simulators, or one agent per host."""
        if self._fleet is not None:
            return [p.pid for p in self._fleet.processes]
        return [p.pid for name, p in self.processes.items() if name not in CORE]
