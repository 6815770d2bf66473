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

# xds-protos (Envoy's ext_proc contract, for the body guard) ships an older copy of
# opentelemetry/proto over the one the OTLP trace exporter needs; put the exporter's back.
otel_proto="$("$python" -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
"$python" -m pip install -q --force-reinstall --no-deps "opentelemetry-proto==$otel_proto"
