#!/bin/sh
# Imports the container driver's test image, localhost/stratus-busybox:latest:
# a static busybox and nothing else, no registry needed. Its command sleeps
# forever in a shell that exits on SIGTERM, so a graceful stop is prompt (a bare
# `sleep` as PID 1 ignores SIGTERM and every stop would wait for SIGKILL).
# Idempotent: an existing image is kept. Podman's global options (--root,
# --runroot, ...) pass through, so tests can import into their own storage.
# Usage: tools/podman_test_image.sh [podman global options]
set -eu
image=localhost/stratus-busybox:latest
if podman "$@" image exists "$image"; then
    exit 0
fi
busybox="$(command -v busybox)" || { echo "busybox-static is not installed" >&2; exit 1; }
ldd "$busybox" 2>&1 | grep -q 'not a dynamic executable' \
    || { echo "$busybox is not statically linked: install busybox-static" >&2; exit 1; }

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" \
    "$rootfs/tmp" "$rootfs/run" "$rootfs/var"
cp "$busybox" "$rootfs/bin/busybox"
for applet in sh sleep cat echo ls ps id hostname ip true false env; do
    ln -s busybox "$rootfs/bin/$applet"
done
tar -C "$rootfs" -c . | podman "$@" import --quiet \
    --change 'CMD ["/bin/sh", "-c", "trap \"exit 0\" TERM; sleep 2147483647 & wait"]' \
    --message "Stratus container driver test image" - "$image" >/dev/null
