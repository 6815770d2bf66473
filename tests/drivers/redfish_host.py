"""Bare metal for tests: sushy-tools' Redfish emulator, and redfish drivers enrolled in it.

The emulator runs in its own process on a free port with a fresh state
directory, HTTP basic auth on, and by default libvirt's test:///default behind
it (deploy/local/redfish_bmc.py, which `make run` starts too): power changes
take about 0.1 s, but virtual media fails there. `fake=True` runs its fake
backend instead, which can insert virtual media but takes 1-11 s per power
change, so tests use it only for virtual media. It needs sushy-tools (a dev
dependency) and, for libvirt, libvirt-python: without them the caller skips,
except in CI, where it fails.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from tempfile import mkdtemp
from typing import TYPE_CHECKING

import pytest

from deploy.local.mesh import ROOT, free_port
from deploy.local.redfish_bmc import (
    DISK_GB,
    IMAGES,
    Machine,
    write_config,
    write_enrolment,
    write_htpasswd,
    write_machines_json,
)
from services.hostagent.drivers.base import HostResources
from tests.drivers.libvirt_host import require_libvirt

if TYPE_CHECKING:
    from services.hostagent.drivers.redfish import RedfishDriver

# Never printed, logged or returned: tests/drivers/test_redfish_driver.py looks for them.
USERNAME = "bmc-operator-7"
PASSWORD = "s3cret-Bmc-pw-4f1c9e"

# Sorted by name, smallest first: a spawn without an allocation takes the first that fits.
MACHINES = (
    Machine("bm-0", "11111111-2222-3333-4444-000000000000", 2, 4096),
    Machine("bm-1", "11111111-2222-3333-4444-000000000001", 4, 8192),
    Machine("bm-2", "11111111-2222-3333-4444-000000000002", 8, 16384, "silver"),
)
# What a driver enrolling MACHINES reports for the host: their sum.
HOST = HostResources(
    vcpus=sum(m.vcpus for m in MACHINES),
    ram_mb=sum(m.ram_mb for m in MACHINES),
    disk_gb=DISK_GB * len(MACHINES),
)


def require_redfish() -> None:
    """sushy, sushy-tools and libvirt-python, or skip the caller; in CI, fail instead."""
    try:
        import sushy  # noqa: F401
        import sushy_tools  # noqa: F401
    except ImportError as exc:
        reason = f"{exc.name} is missing: make venv installs it (a dev dependency)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI must test the redfish driver)", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
    require_libvirt()


class Emulator:
    """One sushy-emulator process; start() it, stop() it (by its pid)."""

    def __init__(self, state_dir: Path, machines=MACHINES, fake: bool = False) -> None:
        self.state_dir = state_dir
        self.machines = machines
        self.fake = fake
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = state_dir / "emulator.log"
        self._proc: subprocess.Popen | None = None

    def start(self) -> Emulator:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        htpasswd = self.state_dir / "htpasswd"
        write_htpasswd(htpasswd, USERNAME, PASSWORD)
        config = self.state_dir / "emulator.conf"
        fake = {}
        if self.fake:
            fake["SUSHY_EMULATOR_FAKE_DRIVER"] = True
            fake["SUSHY_EMULATOR_FAKE_SYSTEMS"] = [
                {"uuid": m.uuid, "name": m.name, "power_state": "Off", "external_notifier": False}
                for m in self.machines
            ]
        write_config(
            config,
            self.port,
            self.state_dir / "state",
            htpasswd,
            libvirt_uri=None if self.fake else "test:///default",
            **fake,
        )
        if self.fake:
            command = [
                str(Path(sys.executable).with_name("sushy-emulator")),
                "--config",
                str(config),
            ]
        else:
            seeds = self.state_dir / "machines.json"
            write_machines_json(seeds, self.machines)
            command = [
                sys.executable,
                "-m",
                "deploy.local.redfish_bmc",
                "--config",
                str(config),
                str(seeds),
            ]
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sushy-emulator did not start; see {self.log}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def system(self, machine: Machine) -> str:
        return f"/redfish/v1/Systems/{machine.uuid}"

    def power_state(self, machine: Machine) -> str:
        """The machine's power state as the BMC says it ("On", "Off")."""
        return self.get(self.system(machine))["PowerState"]

    def get(self, path: str) -> dict:
        request = urllib.request.Request(self.url + path)
        password = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        password.add_password(None, self.url, USERNAME, PASSWORD)
        opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(password))
        with opener.open(request, timeout=10) as answer:
            return json.load(answer)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/redfish/v1/", timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            return False


_shared: Emulator | None = None


def shared_emulator() -> Emulator:
    """The libvirt-backed emulator of this test process: started on first use, stopped at
    exit. Tests share it; each gives its driver a fresh state directory."""
    global _shared
    require_redfish()
    if _shared is None:
        state_dir = Path(mkdtemp(prefix="stratus-bmc-"))
        _shared = Emulator(state_dir).start()
        atexit.register(shutil.rmtree, state_dir, ignore_errors=True)
        atexit.register(_shared.stop)  # first: atexit runs last-registered first
    return _shared


def write_machines_file(
    directory: Path,
    emulator: Emulator,
    machines=MACHINES,
    images: dict[str, str] = IMAGES,
    credentials_file: bool = True,
) -> Path:
    """An enrolment file for machines of emulator; credentials in a file of their own
    (mode 0600) unless credentials_file is False."""
    return write_enrolment(
        directory, emulator.url, machines, USERNAME, PASSWORD, images, credentials_file
    )


def make_redfish_driver(
    tmp_path: Path, emulator: Emulator | None = None, state_dir: Path | None = None, **options
) -> RedfishDriver:
    """A driver enrolling MACHINES of emulator (the shared one by default), its state in
    state_dir (tmp_path/state by default). Close it when done."""
    emulator = emulator or shared_emulator()
    from services.hostagent.drivers.redfish import RedfishDriver, load_enrolment

    enrolment = load_enrolment(write_machines_file(tmp_path / "etc", emulator))
    options = {"request_timeout_s": 5.0, "power_timeout_s": 10.0, **options}
    return RedfishDriver(enrolment, state_dir or tmp_path / "state", **options)
