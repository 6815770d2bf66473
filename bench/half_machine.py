"""Run a benchmark as if this machine had half its CPU: a slow hour's stand-in.

    .venv/bin/python -m bench.half_machine {neighbour,cgroup} -- CMD [ARG...]

The reference machine is a shared VM whose speed moves by up to half within
an hour. A target that should hold in such an hour is checked by running its
benchmark under one of these (as root; PostgreSQL's processes are found by
name and put back as they were on exit):

* neighbour: CMD and every PostgreSQL process pinned to CPU 0, while a busy
  loop holds every other CPU, as a neighbour would. Leaving the other CPU
  idle instead understated the code here: placement's claims went from 703
  to 1,101-1,150/s when a busy loop took the idle CPU, and the CPU per claim
  of the processes together fell by two fifths (README, Placement).
* cgroup: CMD and PostgreSQL share one CPU's time per 10 ms period spread
  over all CPUs (the cgroup cpu controller's quota). The harsher of the two:
  throttling raised the CPU per claim of the processes together by 10-15%.

The results CMD writes are the stand-in's, not a normal run's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import contextmanager, suppress
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 10_000


def postgres_pids() -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                pids.append(int(comm.parent.name))
        except OSError:  # gone meanwhile
            continue
    return pids


@contextmanager
def neighbour():
    """Yields how to pin CMD; PostgreSQL pinned to CPU 0, the others kept busy."""
    every = os.sched_getaffinity(0)
    first = min(every)
    _set_affinity(postgres_pids(), {first})
    busy = []
    for cpu in sorted(every - {first}):
        busy.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        os.sched_setaffinity(busy[-1].pid, {cpu})
    try:
        yield lambda: os.sched_setaffinity(0, {first})
    finally:
        for loop in busy:
            loop.kill()
            loop.wait()
        # Backends forked meanwhile inherited CPU 0 from the postmaster too.
        _set_affinity(postgres_pids(), every)


def _set_affinity(pids: list[int], cpus: set[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):  # gone meanwhile
            os.sched_setaffinity(pid, cpus)


@contextmanager
def cgroup():
    """Yields how to put CMD in a cgroup of one CPU's time; PostgreSQL in it too."""
    group, procs = _make_cgroup()
    home = {pid: _cgroup_of(pid) for pid in postgres_pids()}
    for pid in home:
        _move(pid, procs)
    try:
        yield lambda: procs.write_text(str(os.getpid()))
    finally:
        postmaster_home = next(iter(home.values()), None)
        for pid in postgres_pids():  # backends forked meanwhile went in too
            target = home.get(pid, postmaster_home)
            if target is not None:
                _move(pid, target)
        group.rmdir()


def _v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def _make_cgroup() -> tuple[Path, Path]:
    name = f"stratus-half-machine-{os.getpid()}"
    if _v2():
        group = CGROUP_ROOT / name
        group.mkdir()
        (group / "cpu.max").write_text(f"{PERIOD_US} {PERIOD_US}")
    else:  # v1: the cpu controller's own hierarchy
        group = CGROUP_ROOT / "cpu" / name
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(PERIOD_US))
    return group, group / "cgroup.procs"


def _cgroup_of(pid: int) -> Path:
    """The cgroup.procs file of the pid's cpu cgroup now."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if _v2() if controllers == "" else "cpu" in controllers.split(","):
            base = CGROUP_ROOT if controllers == "" else CGROUP_ROOT / "cpu"
            return base / path.lstrip("/") / "cgroup.procs"
    raise RuntimeError(f"no cpu cgroup for process {pid}")


def _move(pid: int, procs: Path) -> None:
    with suppress(ProcessLookupError):  # gone meanwhile
        procs.write_text(str(pid))


STAND_INS: dict[str, Callable] = {"neighbour": neighbour, "cgroup": cgroup}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stand_in", choices=STAND_INS)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    with STAND_INS[args.stand_in]() as confine:
        return subprocess.call(command, preexec_fn=confine)


if __name__ == "__main__":
    sys.exit(main())
