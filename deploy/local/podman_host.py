"""A private podman service for container hosts on one machine.

`make run` starts it (the Procfile's podman line runs `python -m
deploy.local.podman_host`, which execs `podman system service`) and so do the
container driver's tests (tests/drivers/container_host.py). Its storage (vfs:
no overlay mounts to leave behind) and runtime state are its own, with
deploy/podman/containers.conf, so it never sees the machine's other containers.
Its images are the busybox test image (tools/podman_test_image.sh), also tagged
`cirros`. It needs root (cgroup limits), podman, runc and busybox-static.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
IMAGE_SCRIPT = ROOT / "tools" / "podman_test_image.sh"
TEST_IMAGE = "localhost/stratus-busybox:latest"
# The conformance suite and `make run`'s banner boot `cirros` on every driver.
IMAGE_ALIASES = ("localhost/cirros:latest",)
COMMAND_TIMEOUT_S = 60.0
CGROUP_ROOTS = ("/sys/fs/cgroup", *(str(p) for p in Path("/sys/fs/cgroup").glob("*/")))


def podman_missing() -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    missing = [tool for tool in ("podman", "runc", "busybox") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} missing"
    if os.geteuid() != 0:
        return "not root (podman sets cgroup limits)"
    try:
        import podman  # noqa: F401
    except ImportError:
        return "the podman client (Python) is missing"
    return None


def options(storage: Path, run: Path) -> list[str]:
    """podman's global options for storage under `storage` and runtime state under `run`."""
    return [
        f"--root={storage}/root",
        f"--runroot={run}/run",
        f"--tmpdir={run}/tmp",
        "--storage-driver=vfs",
        # Else netavark keeps its lock in /etc/containers/networks, even with no network.
        f"--network-config-dir={storage}/networks",
    ]


def environ() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def run_dir(state_dir: Path) -> Path:
    """Where a mesh's podman keeps runtime state and its socket: short, under /tmp (a unix
    socket path may not exceed 107 bytes), one per state directory."""
    digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return Path("/tmp") / f"stratus-podman-{digest}"


def mesh_options(state_dir: Path) -> list[str]:
    return options(state_dir / "podman", run_dir(state_dir))


def socket_url(state_dir: Path) -> str:
    return f"unix://{run_dir(state_dir)}/podman.sock"


def podman(opts: list[str], *args: str) -> str:
    """Runs the podman CLI with global options opts; its output."""
    done = subprocess.run(
        ["podman", *opts, *args],
        env=environ(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def import_image(opts: list[str]) -> None:
    """The test image and its aliases in the storage of opts (kept if there)."""
    subprocess.run([str(IMAGE_SCRIPT), *opts], env=environ(), check=True, timeout=COMMAND_TIMEOUT_S)
    for alias in IMAGE_ALIASES:
        podman(opts, "tag", TEST_IMAGE, alias)


def remove_containers(opts: list[str]) -> None:
    """Every container of the storage of opts (all Stratus's: the storage is private)."""
    podman(opts, "rm", "--all", "--force", "--time=0")


def forget_run_dir(state_dir: Path) -> None:
    """Remove a stopped mesh's runtime directory (its storage stays in the state directory),
    unless something is still mounted under it."""
    path = run_dir(state_dir)
    mounts = Path("/proc/self/mountinfo").read_text().split("\n")
    if not any(f" {path}/" in line or f" {path} " in line for line in mounts):
        shutil.rmtree(path, ignore_errors=True)


def libpod_cgroups() -> set[str]:
    """Every cgroup directory at or under a libpod_parent, in every hierarchy."""
    found: set[str] = set()
    for root in CGROUP_ROOTS:
        parent = Path(root) / "libpod_parent"
        if parent.is_dir():
            found.add(str(parent))
            found.update(str(p) for p in parent.rglob("*") if p.is_dir())
    return found


def remove_cgroups(before: set[str], wait_s: float = 5.0) -> None:
    """cgroupfs leaves libpod_parent/{conmon,...} under every controller: remove those not
    in `before`. rmdir refuses a cgroup in use, so the last conmons (which exit just
    after their container is removed) get a moment to go."""
    deadline = time.monotonic() + wait_s
    while True:
        left = sorted(libpod_cgroups() - before, key=len, reverse=True)
        for cgroup in left:
            with contextlib.suppress(OSError):
                os.rmdir(cgroup)
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def main() -> None:
    """Exec `podman system service` for the mesh of $STRATUS_STATE_DIR."""
    state_dir = Path(os.environ["STRATUS_STATE_DIR"])
    run_dir(state_dir).mkdir(mode=0o700, exist_ok=True)
    argv = ["podman", *mesh_options(state_dir), "system", "service", "--time=0"]
    os.execvpe("podman", [*argv, socket_url(state_dir)], environ())


if __name__ == "__main__":
    sys.exit(main())
