"""Encoding allocation candidates answers, from pieces encoded once per provider state.

Why: an answer of 1,000 candidates is 2,000 messages (a request and a
summary per host), and building them as Python protobuf objects cost about
10 ms, more than finding the candidates. A provider's summary, and its
one-provider request for given amounts, only change when the provider does;
the index replaces a provider's node on every change, so the pieces are
cached per node (weakly: they go when the node goes) and an answer is their
concatenation.

Concatenation is valid protobuf: each piece is the encoding of a
ListAllocationCandidatesResponse holding one element, and encodings of a
message concatenate into the message with every repeated element in order.
The service is therefore registered with a serializer that passes these
bytes through (add_to_server); the wire contract is unchanged.
"""

from __future__ import annotations

import weakref

import grpc
from stratus.placement.v1 import allocation_candidates_pb2 as pb
from stratus.placement.v1 import allocations_pb2

from services.placement.candidates import Candidates
from services.placement.capacity_index.state import ProviderNode

SERVICE = "stratus.placement.v1.AllocationCandidateService"


def _request_piece(allocations: dict[str, dict[str, int]]) -> bytes:
    request = pb.AllocationRequest(
        allocations=[
            allocations_pb2.Allocation(resource_provider_uuid=p, resources=r)
            for p, r in sorted(allocations.items())
        ]
    )
    return pb.ListAllocationCandidatesResponse(allocation_requests=[request]).SerializeToString()


def _summary_piece(provider: ProviderNode, root_uuid: str, parent_uuid: str) -> bytes:
    summary = pb.ProviderSummary(
        resource_provider_uuid=provider.uuid,
        name=provider.name,
        root_uuid=root_uuid,
        parent_uuid=parent_uuid,
        resources={
            rc: pb.ResourceSummary(capacity=i.capacity, used=i.used)
            for rc, i in provider.inventories.items()
        },
        traits=sorted(provider.traits),
        aggregates=sorted(provider.aggregates),
    )
    return pb.ListAllocationCandidatesResponse(provider_summaries=[summary]).SerializeToString()


class _Pieces:
    __slots__ = ("requests", "summary")

    def __init__(self) -> None:
        self.summary = b""
        self.requests: dict[tuple, bytes] = {}  # amounts -> its one-provider request


class CandidateReplies:
    def __init__(self) -> None:
        self._pieces: weakref.WeakKeyDictionary[ProviderNode, _Pieces] = weakref.WeakKeyDictionary()

    def encode(self, found: Candidates) -> bytes:
        """The encoded ListAllocationCandidatesResponse for `found`."""
        by_id = {p.id: p for p in found.providers}
        parts = []
        for request in found.requests:
            if len(request) == 1:
                [(provider_id, amounts)] = request.items()
                parts.append(self._one_provider(by_id[provider_id], amounts))
            else:
                parts.append(_request_piece({by_id[i].uuid: a for i, a in request.items()}))
        for provider in found.providers:
            pieces = self._of(provider)
            if not pieces.summary:
                pieces.summary = _summary_piece(
                    provider,
                    by_id[provider.root_id].uuid,
                    by_id[provider.parent_id].uuid if provider.parent_id else "",
                )
            parts.append(pieces.summary)
        return b"".join(parts)

    def _one_provider(self, provider: ProviderNode, amounts: dict[str, int]) -> bytes:
        requests = self._of(provider).requests
        key = tuple(amounts.items())
        piece = requests.get(key)
        if piece is None:
            piece = requests[key] = _request_piece({provider.uuid: amounts})
        return piece

    def _of(self, provider: ProviderNode) -> _Pieces:
        pieces = self._pieces.get(provider)
        if pieces is None:
            pieces = self._pieces[provider] = _Pieces()
        return pieces


def _already_encoded(reply: bytes) -> bytes:
    return reply


def add_to_server(servicer, server: grpc.aio.Server) -> None:
    """Register the candidates service with a serializer that passes the
    servicer's encoded answers through."""
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.ListAllocationCandidates,
        request_deserializer=pb.ListAllocationCandidatesRequest.FromString,
        response_serializer=_already_encoded,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"ListAllocationCandidates": handler}),)
    )
