"""Reject JSON request bodies the gRPC-JSON transcoder would silently accept.

Envoy's transcoder drops unknown JSON fields, so a typo such as ``"falvor"``
would be ignored. Envoy therefore hands every REST request that has a body to
this ext_proc servicer first (each service guards its own routes). It finds
the method from the ``google.api.http`` rules of the service's own protos,
walks the JSON against the message descriptor, and answers 400 naming the
first unknown field; type errors are caught with protobuf's own JSON parser,
the same rules the transcoder applies.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from envoy.type.v3 import http_status_pb2
from google.api import annotations_pb2, http_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor

from services.common.context import REQUEST_ID_KEY
from services.common.errors import FieldViolation, InvalidArgument, StratusError
from services.common.http_paths import path_pattern
from services.common.interceptors import fault_body

log = logging.getLogger(__name__)

_BODY_METHODS = ("post", "put", "patch")
GUARD_MARKER = "x-stratus-fault"


@dataclass(frozen=True)
class BodyRule:
    method: str
    path: re.Pattern[str]
    body: Descriptor  # the message the JSON body must parse into
    body_field: str  # "*" or the request field the body binds to


def body_rules(services: Iterable[ServiceDescriptor]) -> list[BodyRule]:
    rules = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            top: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
            for rule in (top, *top.additional_bindings):
                verb = rule.WhichOneof("pattern")
                template = rule.custom.path if verb == "custom" else getattr(rule, verb)
                http_method = rule.custom.kind.lower() if verb == "custom" else verb
                if not rule.body or (http_method not in _BODY_METHODS and verb != "custom"):
                    continue
                if rule.body == "*":
                    body = method.input_type
                else:
                    field = method.input_type.fields_by_name[rule.body]
                    if field.message_type is None:
                        continue
                    body = field.message_type
                rules.append(
                    BodyRule(
                        http_method.upper(), re.compile(path_pattern(template)), body, rule.body
                    )
                )
    return rules


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _unknown_fields(value: object, descriptor: Descriptor, path: str) -> list[FieldViolation]:
    """Unknown keys anywhere in value, with their dotted paths."""
    if descriptor.full_name.startswith("google.protobuf.") or not isinstance(value, dict):
        return []  # well-known types have their own JSON forms; the parser checks them
    found = []
    for key, item in value.items():
        field = descriptor.fields_by_name.get(key) or next(
            (f for f in descriptor.fields if f.json_name == key), None
        )
        where = f"{path}.{key}" if path else key
        if field is None:
            known = ", ".join(f.name for f in descriptor.fields)
            found.append(FieldViolation(where, f"unknown field; {descriptor.name} has: {known}"))
        elif _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None and isinstance(item, dict):
                for map_key, map_value in item.items():
                    found += _unknown_fields(
                        map_value, value_field.message_type, f"{where}[{map_key!r}]"
                    )
        elif field.message_type is not None:
            items = item if field.is_repeated and isinstance(item, list) else [item]
            for index, element in enumerate(items):
                suffix = f"[{index}]" if isinstance(item, list) else ""
                found += _unknown_fields(element, field.message_type, where + suffix)
    return found


def check_body(rule: BodyRule, body: bytes) -> StratusError | None:
    """None if body is what rule's message accepts, else the error to answer."""
    if not body.strip():
        return None  # an empty body is an empty message; field rules report what is missing
    prefix = "" if rule.body_field == "*" else rule.body_field
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        return InvalidArgument(
            f"the request body is not valid JSON: {exc}", code="stratus.invalid_json"
        )
    if not isinstance(document, dict):
        return InvalidArgument(
            "the request body must be a JSON object", code="stratus.invalid_json"
        )
    unknown = _unknown_fields(document, rule.body, prefix)
    if unknown:
        return InvalidArgument(
            "; ".join(f"{v.field}: {v.description}" for v in unknown),
            code="stratus.unknown_field",
            field_violations=tuple(unknown),
        )
    try:
        json_format.ParseDict(document, message_factory.GetMessageClass(rule.body)())
    except json_format.ParseError as exc:
        return InvalidArgument(f"{prefix or 'body'}: {exc}", code="stratus.invalid_field")
    return None


class BodyGuard(ext_proc_grpc.ExternalProcessorServicer):
    """Envoy ext_proc servicer; see the module docstring."""

    def __init__(self, services: Iterable[ServiceDescriptor]) -> None:
        self._rules = body_rules(services)

    def find_rule(self, method: str, path: str) -> BodyRule | None:
        path = path.split("?", 1)[0]
        return next((r for r in self._rules if r.method == method and r.path.match(path)), None)

    async def Process(
        self, request_iterator: AsyncIterator[ext_proc.ProcessingRequest], context
    ) -> AsyncIterator[ext_proc.ProcessingResponse]:
        headers: dict[str, str] = {}
        async for request in request_iterator:
            kind = request.WhichOneof("request")
            if kind == "request_headers":
                headers = {
                    h.key: h.raw_value.decode() if h.raw_value else h.value
                    for h in request.request_headers.headers.headers
                }
                yield ext_proc.ProcessingResponse(request_headers=ext_proc.HeadersResponse())
            elif kind == "request_body":
                rule = self.find_rule(headers.get(":method", ""), headers.get(":path", ""))
                error = check_body(rule, request.request_body.body) if rule else None
                if error is None:
                    yield ext_proc.ProcessingResponse(request_body=ext_proc.BodyResponse())
                else:
                    yield self._reject(error, headers.get(REQUEST_ID_KEY, ""))
            else:
                log.warning(
                    "body guard got an unexpected %s message; check Envoy's processing_mode", kind
                )

    @staticmethod
    def _reject(error: StratusError, request_id: str) -> ext_proc.ProcessingResponse:
        body = fault_body(error, grpc.StatusCode.INVALID_ARGUMENT, request_id)
        return ext_proc.ProcessingResponse(
            immediate_response=ext_proc.ImmediateResponse(
                status=http_status_pb2.HttpStatus(code=http_status_pb2.BadRequest),
                body=body.encode(),
                headers=ext_proc.HeaderMutation(
                    set_headers=[
                        base_pb2.HeaderValueOption(
                            header=base_pb2.HeaderValue(key=key, raw_value=value)
                        )
                        for key, value in (
                            ("content-type", b"application/json"),
                            # Tells the edge's local-reply rules this body is final.
                            (GUARD_MARKER, b"body-guard"),
                        )
                    ]
                ),
                details="stratus_body_guard",
            )
        )
