"""A benchmark interrupted at the terminal leaves no process behind.

The mesh's processes run in sessions of their own, so a Ctrl-C reaches only
the benchmark; it must stop them on its way out (bench/mesh.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from deploy.local.mesh import ROOT
from tests.harness import TERMINAL_SIGINT

# A benchmark's shape: the mesh started from a thread, then a long wait.
BENCHMARK = """
import asyncio, json
from bench.mesh import BenchMesh

async def main():
    mesh = BenchMesh("sqlite", 2)
    await asyncio.to_thread(mesh.start)
    print(json.dumps([*mesh.pids().values(), *mesh.host_pids()]), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_ctrl_c_stops_every_process_of_the_mesh():
    bench = subprocess.Popen(
        [sys.executable, "-c", TERMINAL_SIGINT + BENCHMARK],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    try:
        pids = json.loads(bench.stdout.readline())
        assert pids and all(_alive(pid) for pid in pids)
        bench.send_signal(signal.SIGINT)
        bench.wait(timeout=90)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in pids if _alive(pid)] == []
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        for pid in pids:
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
