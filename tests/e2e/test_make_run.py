"""`make run`'s launcher: comes up, seeds flavors once, prints tokens that work, and Ctrl-C
leaves nothing behind."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import httpx

from deploy.local.mesh import PORT_OFFSETS, ROOT
from tests.harness import TERMINAL_SIGINT

RUN = "deploy.local.run"  # what `make run` starts


def _free_base() -> int:
    for _ in range(50):
        # Below the kernel's ephemeral range, where outgoing connections take ports.
        base = random.randrange(20000, 32000, 100)
        ports = [base + offset for offset in PORT_OFFSETS.values()]
        if not any(_listening(p) for p in ports):
            return base
    raise RuntimeError("no free port range")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _launch(state_dir, base):
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            TERMINAL_SIGINT + f"import runpy; runpy.run_module({RUN!r}, run_name='__main__')",
            "--state-dir",
            str(state_dir),
            "--port-base",
            str(base),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_banner(proc, timeout=60) -> str:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if line.startswith("Ctrl-C stops everything"):
            return "".join(seen)
    raise AssertionError("no banner:\n" + "".join(seen[-40:]))


def _tokens(banner: str) -> dict[str, dict[str, str]]:
    """The banner's `export NAME=token` lines, as auth headers by name."""
    found = re.findall(r"^  export (\w+)=(\S+)$", banner, re.MULTILINE)
    return {name: {"authorization": f"Bearer {token}"} for name, token in found}


def _interrupt(proc) -> None:
    # What a terminal's Ctrl-C does: SIGINT to the whole foreground group.
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=30)


def test_run_comes_up_seeds_once_and_stops_cleanly(tmp_path):
    base = _free_base()
    ports = [base + offset for offset in PORT_OFFSETS.values()]
    rest = f"http://127.0.0.1:{base}"

    proc = _launch(tmp_path / "state", base)
    try:
        banner = _wait_banner(proc)
        assert rest in banner and "seeded flavors: m1.tiny" in banner
        tokens = _tokens(banner)
        assert tokens.keys() == {"ADMIN_TOKEN", "TOKEN"}
        listed = httpx.get(f"{rest}/v1/flavors", headers=tokens["TOKEN"]).json()
        names = [f["name"] for f in listed["flavors"]]
        assert names == ["m1.large", "m1.medium", "m1.small", "m1.tiny"]
        # The member token is a member's: creating a flavor takes the admin one.
        flavor = {"name": "banner-check", "vcpus": 1, "ram_mb": 256}
        denied = httpx.post(f"{rest}/v1/flavors", json=flavor, headers=tokens["TOKEN"])
        assert denied.status_code == 403
        assert httpx.get(f"{rest}/v1/flavors").status_code == 401
    finally:
        _interrupt(proc)
    assert proc.returncode == 0
    assert [p for p in ports if _listening(p)] == []

    # A second run keeps the state of the first, its signing key included: the
    # first run's tokens still work, and flavors are not seeded twice.
    proc = _launch(tmp_path / "state", base)
    try:
        assert "flavors kept from the last run" in _wait_banner(proc)
        listed = httpx.get(f"{rest}/v1/flavors", headers=tokens["ADMIN_TOKEN"]).json()
        assert len(listed["flavors"]) == 4
    finally:
        _interrupt(proc)
    assert [p for p in ports if _listening(p)] == []
