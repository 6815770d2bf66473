#!/bin/sh
# Sets up what the container driver and its tests need on a Debian host, as root:
# podman, runc (crun fails on hybrid cgroups), busybox-static (the test image's
# only binary) and deploy/podman/containers.conf as a podman drop-in.
# Idempotent, and quick when everything is in place. Without root or apt it
# only says what is missing (the container tests then skip, and fail in CI).
# Usage: tools/setup_podman.sh
set -eu
conf_src="$(dirname "$0")/../deploy/podman/containers.conf"
conf_dst=/etc/containers/containers.conf.d/50-stratus.conf

missing=""
for tool in podman runc; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
# The test image is this one file, so it must be the static build.
ldd "$(command -v busybox 2>/dev/null || echo /nonexistent)" 2>&1 \
    | grep -q 'not a dynamic executable' || missing="$missing busybox-static"

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    [ -z "$missing" ] || echo "note: container tests will skip: missing$missing (run tools/setup_podman.sh as root)"
    exit 0
fi

if [ -n "$missing" ]; then
    echo "setup_podman: installing$missing"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        podman runc busybox-static >/dev/null; } \
        || { echo "note: could not install podman, runc and busybox-static with apt-get"; exit 0; }
fi

if ! cmp -s "$conf_src" "$conf_dst"; then
    mkdir -p "$(dirname "$conf_dst")"
    cp "$conf_src" "$conf_dst"
    echo "setup_podman: wrote $conf_dst"
fi
