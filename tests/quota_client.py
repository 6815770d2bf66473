"""A small synchronous client for quota, as the other services use it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import grpc
from stratus.quota.v1 import quota_pb2 as pb
from stratus.quota.v1 import quota_pb2_grpc

SERVICE = (("x-stratus-roles", "service"), ("x-stratus-user", "api_gateway"))
ADMIN = (("x-stratus-roles", "admin"), ("x-stratus-user", "root"))


def new_uuid() -> str:
    return str(uuid.uuid4())


def new_project() -> str:
    """A project of one's own: the meshes are shared by every test."""
    return f"project-{uuid.uuid4().hex[:10]}"


def batch(consumers: list[str], project: str, **deltas: int) -> pb.BatchClaimRequest:
    """One BatchClaim request: the same deltas for each consumer."""
    return pb.BatchClaimRequest(
        claims=[
            pb.ClaimRequest(consumer_id=c, project_id=project, deltas=deltas) for c in consumers
        ]
    )


@dataclass
class Quota:
    channel: grpc.Channel
    metadata: tuple = SERVICE

    def __post_init__(self) -> None:
        self.stub = quota_pb2_grpc.QuotaServiceStub(self.channel)

    def claim(
        self, consumer: str, project: str, server_group_id: str = "", **deltas: int
    ) -> pb.QuotaClaim:
        return self.stub.Claim(
            pb.ClaimRequest(
                consumer_id=consumer,
                project_id=project,
                deltas=deltas,
                server_group_id=server_group_id,
            ),
            metadata=self.metadata,
            timeout=30,
        )

    def claim_batch(
        self, consumers: list[str], project: str, server_group_id: str = "", **deltas: int
    ) -> list[pb.QuotaClaim]:
        """The same deltas for each consumer, in one all-or-nothing call."""
        reply = self.stub.BatchClaim(
            pb.BatchClaimRequest(
                claims=[
                    pb.ClaimRequest(
                        consumer_id=consumer,
                        project_id=project,
                        deltas=deltas,
                        server_group_id=server_group_id,
                    )
                    for consumer in consumers
                ]
            ),
            metadata=self.metadata,
            timeout=30,
        )
        return list(reply.claims)

    def claim_batches(self, batches: list[pb.BatchClaimRequest]) -> list[pb.ClaimBatchResult]:
        reply = self.stub.ClaimBatches(
            pb.ClaimBatchesRequest(batches=batches), metadata=self.metadata, timeout=30
        )
        return list(reply.results)

    def release(self, consumer: str) -> None:
        self.stub.Release(
            pb.ReleaseRequest(consumer_id=consumer), metadata=self.metadata, timeout=30
        )

    def release_batch(self, consumers: list[str]) -> None:
        self.stub.BatchRelease(
            pb.BatchReleaseRequest(consumer_ids=consumers), metadata=self.metadata, timeout=30
        )

    def project(self, project: str) -> pb.ProjectQuota:
        return self.stub.GetProjectQuota(
            pb.GetProjectQuotaRequest(project_id=project), metadata=self.metadata, timeout=30
        )

    def in_use(self, project: str) -> dict[str, int]:
        """Usage of the resources the project uses (zeros left out)."""
        return {r: q.in_use for r, q in self.project(project).resources.items() if q.in_use}

    def set_limit(self, project: str, resource: str, limit: int) -> pb.ProjectQuota:
        return self.stub.SetProjectLimit(
            pb.SetProjectLimitRequest(project_id=project, resource=resource, limit=limit),
            metadata=ADMIN,
            timeout=30,
        )

    def delete_limit(self, project: str, resource: str) -> pb.ProjectQuota:
        return self.stub.DeleteProjectLimit(
            pb.DeleteProjectLimitRequest(project_id=project, resource=resource),
            metadata=ADMIN,
            timeout=30,
        )
