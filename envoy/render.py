"""Render Envoy's configuration for the Stratus REST edge.

Everything Envoy must know about the API is derived from the descriptor set
the build produces, so adding an annotated method needs no config edit:
  * the transcoder exposes every service that has google.api.http rules;
  * gRPC paths (after transcoding, or from native gRPC clients) route by
    package to the owning service (PACKAGE_OWNERS);
  * each REST binding with a body is routed through the owning service's
    body guard (ext_proc), which rejects unknown JSON fields;
  * every request, REST or gRPC, needs a bearer token signed by the key in
    --jwks (jwt_authn); its claims become the identity headers (cli/tokens.py).

Usage: python envoy/render.py --descriptor gen/stratus.binpb --out state/envoy.json \
    --jwks state/auth/jwks.json --listen 127.0.0.1:8780 --admin 127.0.0.1:8781 \
    --upstream api_gateway=127.0.0.1:8790 --upstream placement=127.0.0.1:8791 ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from cli.tokens import CLAIM_HEADERS, ISSUER
from services.common.http_paths import path_pattern

HERE = Path(__file__).resolve().parent
# Which service owns each public package; other packages stay internal.
PACKAGE_OWNERS = {
    "stratus.compute.": "api_gateway",
    "stratus.placement.": "placement",
    "stratus.quota.": "quota",
}
# Methods of public services that only the mesh may call: claims are made by
# the scheduler and api_gateway, which talk to placement directly. At the edge
# they answer 404, for REST (routes match the transcoded gRPC path) and gRPC.
INTERNAL_METHODS = (
    "stratus.placement.v1.AllocationService/PutAllocations",
    "stratus.placement.v1.AllocationService/BatchPutAllocations",
    "stratus.placement.v1.AllocationService/DeleteAllocations",
    "stratus.placement.v1.AllocationService/BatchDeleteAllocations",
)
_TYPE = "type.googleapis.com/envoy.extensions."
EXT_PROC = "envoy.filters.http.ext_proc"
EXT_PROC_DISABLED = {
    EXT_PROC: {"@type": _TYPE + "filters.http.ext_proc.v3.ExtProcPerRoute", "disabled": True}
}
ROUTE_TIMEOUT = "30s"


def _owner(package: str) -> str | None:
    return next((svc for prefix, svc in PACKAGE_OWNERS.items() if package.startswith(prefix)), None)


def public_api(descriptor_set: Path) -> tuple[list[str], list[tuple[str, str, str]], set[str]]:
    """(transcoded services, REST body bindings as (method, regex, owner), owners)."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    services, bindings, owners = [], [], set()
    for file in fds.file:
        owner = _owner(file.package + ".")
        if owner is None:
            continue
        for service in file.service:
            rules = []
            for method in service.method:
                options = method.options
                ext = annotations_pb2.http
                # Options arrive as unknown fields unless re-parsed with the extension registered.
                opts = type(options).FromString(options.SerializeToString())
                if opts.HasExtension(ext):
                    top = opts.Extensions[ext]
                    rules.extend([top, *top.additional_bindings])
            if not rules:
                continue
            services.append(f"{file.package}.{service.name}")
            owners.add(owner)
            for rule in rules:
                verb = rule.WhichOneof("pattern")
                if rule.body:
                    method_name = rule.custom.kind if verb == "custom" else verb.upper()
                    template = rule.custom.path if verb == "custom" else getattr(rule, verb)
                    bindings.append((method_name, path_pattern(template), owner))
    return services, bindings, owners


def _address(hostport: str) -> dict:
    host, _, port = hostport.rpartition(":")
    return {"socket_address": {"address": host, "port_value": int(port)}}


def _cluster(name: str, hostport: str) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(hostport)}}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _TYPE + "upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }


def _jwt_authn(jwks: Path) -> dict:
    # The Lua filter before this one has removed any identity header the
    # client sent; only a verified token's claims put them back.
    provider = {
        "issuer": ISSUER,
        "local_jwks": {"filename": str(jwks.resolve())},
        # Header only: a token in a query string ends up in logs.
        "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
        "forward": False,  # services get the claims, never the token
        "require_expiration": True,
        "claim_to_headers": [
            {"header_name": header, "claim_name": claim} for claim, header in CLAIM_HEADERS.items()
        ],
    }
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": _TYPE + "filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"stratus": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "stratus"}}],
        },
    }


def render(
    descriptor: Path, listen: str, admin: str, upstreams: dict[str, str], jwks: Path
) -> dict:
    services, bindings, owners = public_api(descriptor)
    missing = owners - upstreams.keys()
    if missing:
        raise SystemExit(f"no --upstream given for {', '.join(sorted(missing))}")

    # gRPC clients reach the public services only; internal ones (host events)
    # are for the mesh's own callers and answer UNIMPLEMENTED at the edge.
    routes = [
        {
            "match": {"path": f"/{method}"},
            "direct_response": {"status": 404},
            "typed_per_filter_config": EXT_PROC_DISABLED,
        }
        for method in INTERNAL_METHODS
    ]
    routes += [
        {
            "match": {"prefix": f"/{service}/"},
            "route": {"cluster": _owner(service), "timeout": ROUTE_TIMEOUT},
            "typed_per_filter_config": EXT_PROC_DISABLED,
        }
        for service in services
    ]
    routes.append(
        {
            "match": {
                "prefix": "/",
                "headers": [
                    {"name": "content-type", "string_match": {"prefix": "application/grpc"}}
                ],
            },
            "direct_response": {"status": 404},
            "typed_per_filter_config": EXT_PROC_DISABLED,
        }
    )
    for method, regex, owner in bindings:
        routes.append(
            {
                "match": {
                    "safe_regex": {"regex": regex},
                    "headers": [{"name": ":method", "string_match": {"exact": method}}],
                },
                "route": {"cluster": owner, "timeout": ROUTE_TIMEOUT},
                "typed_per_filter_config": {
                    EXT_PROC: {
                        "@type": _TYPE + "filters.http.ext_proc.v3.ExtProcPerRoute",
                        "overrides": {
                            "grpc_service": {"envoy_grpc": {"cluster_name": owner}, "timeout": "2s"}
                        },
                    }
                },
            }
        )
    # Everything else: the transcoder maps it or answers 404 before routing.
    routes.append(
        {
            "match": {"prefix": "/"},
            "route": {"cluster": "api_gateway", "timeout": ROUTE_TIMEOUT},
            "typed_per_filter_config": EXT_PROC_DISABLED,
        }
    )

    http_filters = [
        {
            # First: on the way in it drops client-sent identity headers before
            # jwt_authn; on the way back it sees every reply, local ones included.
            "name": "envoy.filters.http.lua",
            "typed_config": {
                "@type": _TYPE + "filters.http.lua.v3.Lua",
                "default_source_code": {"inline_string": (HERE / "fault_body.lua").read_text()},
            },
        },
        # Before the body guard and the transcoder: nothing unauthenticated
        # reaches a service, not even its body guard.
        _jwt_authn(jwks),
        {
            "name": EXT_PROC,
            "typed_config": {
                "@type": _TYPE + "filters.http.ext_proc.v3.ExternalProcessor",
                "grpc_service": {"envoy_grpc": {"cluster_name": "api_gateway"}, "timeout": "2s"},
                "failure_mode_allow": False,
                "status_on_error": {"code": 503},
                "message_timeout": "2s",
                "processing_mode": {
                    "request_header_mode": "SEND",
                    "response_header_mode": "SKIP",
                    "request_body_mode": "BUFFERED",
                    "response_body_mode": "NONE",
                    "request_trailer_mode": "SKIP",
                    "response_trailer_mode": "SKIP",
                },
            },
        },
        {
            "name": "envoy.filters.http.grpc_json_transcoder",
            "typed_config": {
                "@type": _TYPE + "filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
                "proto_descriptor": str(descriptor.resolve()),
                "services": services,
                "convert_grpc_status": True,
                "request_validation_options": {
                    "reject_unknown_method": True,
                    "reject_unknown_query_parameters": True,
                },
                "print_options": {
                    "always_print_primitive_fields": True,
                    "preserve_proto_field_names": True,
                },
            },
        },
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": _TYPE + "filters.http.router.v3.Router"},
        },
    ]

    hcm = {
        "@type": _TYPE + "filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "rest",
        "codec_type": "AUTO",
        "always_set_request_id_in_response": True,
        "route_config": {
            "name": "stratus",
            "virtual_hosts": [{"name": "stratus", "domains": ["*"], "routes": routes}],
        },
        "http_filters": http_filters,
    }
    return {
        "admin": {"address": _address(admin)},
        "static_resources": {
            "listeners": [
                {
                    "name": "rest",
                    "address": _address(listen),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [_cluster(name, hostport) for name, hostport in sorted(upstreams.items())],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--descriptor", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--jwks", type=Path, required=True, help="public key set that signs bearer tokens"
    )
    parser.add_argument("--listen", required=True, help="host:port of the REST listener")
    parser.add_argument("--admin", required=True, help="host:port of Envoy's admin interface")
    parser.add_argument("--upstream", action="append", default=[], help="service=host:port")
    args = parser.parse_args()
    upstreams = dict(item.split("=", 1) for item in args.upstream)
    config = render(args.descriptor, args.listen, args.admin, upstreams, args.jwks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(config, indent=1))


if __name__ == "__main__":
    main()
