#!/bin/sh
# Installs Stratus into the virtualenv, with the libvirt driver when it can be built.
# libvirt-python compiles against the C library, so it needs libvirt-dev and pkg-config.
# Usage: tools/install_deps.sh <venv>/bin/python
set -eu
python="$1"

if ! pkg-config --exists libvirt 2>/dev/null \
    && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && apt-get install -y -qq libvirt-dev pkg-config; } \
        || echo "note: could not install libvirt-dev and pkg-config with apt-get"
fi

# podman, runc and busybox-static for the container driver (as root; says what is missing otherwise).
"$(dirname "$0")/setup_podman.sh"

if pkg-config --exists libvirt 2>/dev/null; then
    "$python" -m pip install -q -e '.[dev,libvirt]'
else
    "$python" -m pip install -q -e '.[dev]'
    echo "note: libvirt tests will skip; install libvirt-dev and pkg-config, then make venv"
fi
