"""Tracing is off by default and, when configured, records every gRPC call."""

from __future__ import annotations

import os
import signal
import subprocess

import grpc
from stratus.compute.v1 import flavors_pb2, flavors_pb2_grpc

from deploy.local.mesh import start_service
from tests.harness import MEMBER


def _run_api_gateway(tmp_path, exporter: str) -> str:
    env = dict(os.environ, STRATUS_STATE_DIR=str(tmp_path), STRATUS_TELEMETRY__EXPORTER=exporter)
    proc, address = start_service(
        "api_gateway", env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        with grpc.insecure_channel(address) as channel:
            flavors_pb2_grpc.FlavorServiceStub(channel).ListFlavors(
                flavors_pb2.ListFlavorsRequest(), metadata=tuple(MEMBER.items()), timeout=5
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    return output


def test_console_exporter_prints_a_span_per_call(tmp_path):
    output = _run_api_gateway(tmp_path, "console")
    assert '"name": "/stratus.compute.v1.FlavorService/ListFlavors"' in output
    assert '"service.name": "stratus-api_gateway"' in output


def test_no_spans_by_default(tmp_path):
    output = _run_api_gateway(tmp_path, "none")
    assert "FlavorService/ListFlavors" not in output
