"""gRPC adapter for quota: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from stratus.quota.v1 import quota_pb2, quota_pb2_grpc

from services.common.context import current
from services.common.errors import StratusError
from services.common.status_details import to_status
from services.quota.claims import Claim, Claims, NewClaim
from services.quota.limits import Limits, ProjectQuota
from services.quota.servicers.policy import require_operator, require_project_reader


def claim_to_proto(claim: Claim) -> quota_pb2.QuotaClaim:
    created = Timestamp()
    created.FromDatetime(claim.created_at)
    return quota_pb2.QuotaClaim(
        consumer_id=claim.consumer_id,
        project_id=claim.project_id,
        deltas=claim.deltas,
        server_group_id=claim.server_group_id,
        create_time=created,
    )


def _new_claim(request: quota_pb2.ClaimRequest) -> NewClaim:
    return NewClaim(
        consumer_id=request.consumer_id,
        project_id=request.project_id,
        deltas=dict(request.deltas),
        server_group_id=request.server_group_id,
    )


def project_to_proto(project: ProjectQuota) -> quota_pb2.ProjectQuota:
    return quota_pb2.ProjectQuota(
        project_id=project.project_id,
        resources={
            resource: quota_pb2.ResourceQuota(
                limit=quota.limit, in_use=quota.in_use, is_default=quota.is_default
            )
            for resource, quota in project.resources.items()
        },
    )


class QuotaServicer(quota_pb2_grpc.QuotaServiceServicer):
    def __init__(self, claims: Claims, limits: Limits) -> None:
        self._claims = claims
        self._limits = limits

    async def Claim(self, request, context):
        require_operator("claiming quota")
        return claim_to_proto(await self._claims.claim(_new_claim(request)))

    async def BatchClaim(self, request, context):
        require_operator("claiming quota")
        claims = await self._claims.claim_batch([_new_claim(c) for c in request.claims])
        return quota_pb2.BatchClaimResponse(claims=[claim_to_proto(c) for c in claims])

    async def ClaimBatches(self, request, context):
        require_operator("claiming quota")
        outcomes = await self._claims.claim_batches(
            [[_new_claim(c) for c in batch.claims] for batch in request.batches]
        )
        return quota_pb2.ClaimBatchesResponse(
            results=[
                quota_pb2.ClaimBatchResult(error=to_status(outcome))
                if isinstance(outcome, StratusError)
                else quota_pb2.ClaimBatchResult(
                    claimed=quota_pb2.BatchClaimResponse(claims=map(claim_to_proto, outcome))
                )
                for outcome in outcomes
            ]
        )

    async def Release(self, request, context):
        require_operator("releasing quota")
        await self._claims.release(request.consumer_id)
        return empty_pb2.Empty()

    async def BatchRelease(self, request, context):
        require_operator("releasing quota")
        await self._claims.release_many(list(request.consumer_ids))
        return empty_pb2.Empty()

    async def GetProjectQuota(self, request, context):
        require_project_reader(request.project_id)
        return project_to_proto(await self._limits.project_quota(request.project_id))

    async def SetProjectLimit(self, request, context):
        current().require_admin("setting a quota limit")
        project = await self._limits.set_limit(request.project_id, request.resource, request.limit)
        return project_to_proto(project)

    async def DeleteProjectLimit(self, request, context):
        current().require_admin("resetting a quota limit")
        project = await self._limits.delete_limit(request.project_id, request.resource)
        return project_to_proto(project)
