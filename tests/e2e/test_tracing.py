"""Tracing is off by default and, when configured, records every gRPC call."""

from __future__ import annotations

import os
import signal
import subprocess
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from stratus.compute.v1 import flavors_pb2, flavors_pb2_grpc

from deploy.local.mesh import free_port, start_service
from tests.harness import MEMBER


def _run_api_gateway(tmp_path, exporter: str, **settings: str) -> str:
    env = dict(os.environ, STRATUS_STATE_DIR=str(tmp_path), STRATUS_TELEMETRY__EXPORTER=exporter)
    env.update(settings)
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


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A real OTLP/gRPC endpoint that keeps the span names it receives."""

    def __init__(self) -> None:
        self.span_names: list[str] = []

    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.span_names += [span.name for span in scope_spans.spans]
        return trace_service_pb2.ExportTraceServiceResponse()


def test_otlp_exporter_sends_spans_to_a_collector(tmp_path):
    # Broke once: xds-protos installs an older opentelemetry/proto over the
    # exporter's own, and a service configured with exporter=otlp did not start.
    collector = _Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        _run_api_gateway(
            tmp_path, "otlp", STRATUS_TELEMETRY__OTLP_ENDPOINT=f"http://127.0.0.1:{port}"
        )
    finally:
        server.stop(grace=None)
    assert "/stratus.compute.v1.FlavorService/ListFlavors" in collector.span_names
