"""Generate the OpenAPI 3 description of the public REST API from the protos.

Reads gen/stratus.binpb (the descriptor set Envoy transcodes with) and writes
gen/openapi.json: one path per `google.api.http` rule of the public packages,
parameters from the path template and the query, bodies and answers as the
transcoder prints them (proto field names, int64 as strings, enums by name,
Timestamp as RFC 3339), and every error as the edge's one JSON shape. REST
tools and fuzzers can use it; `make gen` keeps it in step with the protos.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from google.api import annotations_pb2, field_behavior_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FieldDescriptor as F

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTOR = ROOT / "gen" / "stratus.binpb"
OUT = ROOT / "gen" / "openapi.json"
PUBLIC_PACKAGES = ("stratus.compute.v1", "stratus.placement.v1", "stratus.quota.v1")
# Claims are the mesh's own: the edge answers 404 to them (envoy/render.py).
INTERNAL_METHODS = {"PutAllocations", "BatchPutAllocations", "DeleteAllocations"}

_SCALARS = {
    F.TYPE_DOUBLE: {"type": "number"},
    F.TYPE_FLOAT: {"type": "number"},
    F.TYPE_INT32: {"type": "integer", "format": "int32"},
    F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    F.TYPE_UINT32: {"type": "integer", "format": "int32"},
    F.TYPE_INT64: {"type": "string", "format": "int64"},
    F.TYPE_UINT64: {"type": "string", "format": "int64"},
    F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_STRING: {"type": "string"},
    F.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WELL_KNOWN = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.FieldMask": {"type": "string", "description": "comma-separated paths"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
}
ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "integer"},
                "status": {"type": "string"},
                "reason": {"type": "string", "description": "stable code to branch on"},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
                "field_violations": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "field": {"type": "string"},
                            "description": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}


class Schemas:
    """components/schemas, filled as messages are referenced."""

    def __init__(self) -> None:
        self.components: dict[str, dict] = {"Error": ERROR}

    def field(self, field) -> dict:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value)}
        single = self.single(field)
        return {"type": "array", "items": single} if _repeated(field) else single

    def single(self, field) -> dict:
        if field.type == F.TYPE_MESSAGE:
            return self.ref(field.message_type)
        if field.type == F.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        return dict(_SCALARS[field.type])

    def ref(self, message) -> dict:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        name = message.full_name.removeprefix("stratus.").replace(".", "_")
        if name not in self.components:
            self.components[name] = {}  # placeholder first: messages may nest themselves
            self.components[name] = self.message(message)
        return {"$ref": f"#/components/schemas/{name}"}

    def message(self, message, skip: frozenset[str] = frozenset()) -> dict:
        properties, required = {}, []
        for field in message.fields:
            if field.name in skip:
                continue
            schema = self.field(field)
            behaviors = _behaviors(field)
            if field_behavior_pb2.OUTPUT_ONLY in behaviors:
                schema["readOnly"] = True
            if field_behavior_pb2.REQUIRED in behaviors:
                required.append(field.name)
            properties[field.name] = schema
        schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        return schema


def _repeated(field) -> bool:
    return field.is_repeated


def _behaviors(field) -> list[int]:
    options = field.GetOptions()
    return list(options.Extensions[field_behavior_pb2.field_behavior])


def _http_rules(method) -> list:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    top = options.Extensions[annotations_pb2.http]
    return [top, *top.additional_bindings]


def _operation(schemas: Schemas, service, method, rule) -> tuple[str, str, dict]:
    verb = rule.WhichOneof("pattern")
    template = rule.custom.path if verb == "custom" else getattr(rule, verb)
    http_method = rule.custom.kind.lower() if verb == "custom" else verb
    path_fields = re.findall(r"{([^}=]+)(?:=[^}]*)?}", template)
    path = re.sub(r"{([^}=]+)=[^}]*}", r"{\1}", template)
    request = method.input_type
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in path_fields
    ]
    operation = {
        "operationId": f"{service.name}_{method.name}",
        "tags": [service.name],
        "summary": method.name,
        "responses": {
            "200": {
                "description": "success",
                "content": {"application/json": {"schema": schemas.ref(method.output_type)}},
            },
            "default": {
                "description": "an error, in the edge's one shape",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    top_fields = {name.split(".")[0] for name in path_fields}
    if rule.body == "*":
        body = schemas.message(request, skip=frozenset(top_fields))
    elif rule.body:
        body = schemas.field(request.fields_by_name[rule.body])
    else:
        body = None
        for field in request.fields:
            if field.name in top_fields or field.type == F.TYPE_MESSAGE:
                continue
            parameters.append({"name": field.name, "in": "query", "schema": schemas.field(field)})
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if parameters:
        operation["parameters"] = parameters
    return path, http_method, operation


def openapi(descriptor_set: Path) -> dict:
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in fds.file:
        pool.Add(file)
    schemas, paths = Schemas(), {}
    for file in fds.file:
        if file.package not in PUBLIC_PACKAGES:
            continue
        for service_proto in file.service:
            service = pool.FindServiceByName(f"{file.package}.{service_proto.name}")
            for method in service.methods:
                if method.name in INTERNAL_METHODS:
                    continue
                for rule in _http_rules(method):
                    path, verb, operation = _operation(schemas, service, method, rule)
                    paths.setdefault(path, {})[verb] = operation
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Stratus",
            "version": "v1",
            "description": "Self-service compute. Generated from protos/ by tools/gen_openapi.py.",
        },
        "servers": [{"url": "http://127.0.0.1:8780"}],
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def main() -> int:
    document = openapi(Path(sys.argv[1]) if len(sys.argv) > 1 else DESCRIPTOR)
    OUT.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(document['paths'])} paths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
