"""Admitting creates: their records, then their quota, for creates that arrive together.

A create is answered once its servers' records exist and their quota is
claimed. The records come first, in task "scheduling": a crash before the
claim leaves records the reconciler finishes (it claims again, idempotently,
then builds), never a quota claim nobody knows about. Creates that arrive
together (services/common/batching.py) share the record transaction and one
ClaimBatches call to quota, in which each create is all or nothing on its
own; a refused create's records are removed (its caller never saw them).

A multi-create that quota refused but that would take fewer servers
(min_count < max_count) then claims server by server, up to what fits; fewer
than min_count keep none.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.api_gateway.models import ServerRow
from services.api_gateway.peers import Quota
from services.api_gateway.record_writer import NewRecords, RecordWriter
from services.api_gateway.servers import ServerRecords
from services.common.batching import Batcher
from services.common.context import RequestContext
from services.common.errors import QuotaExceeded, StratusError

# Servers per batch of creates: bounds one quota call and one transaction.
MAX_BATCH = 500


@dataclass(frozen=True)
class Create:
    ctx: RequestContext
    rows: list[ServerRow]
    min_count: int


def quota_claim(row: ServerRow) -> tuple[str, str, dict[str, int], str]:
    """What a server claims: (consumer, project, deltas, server group)."""
    deltas = {"instances": 1, "cores": row.vcpus, "ram_mb": row.ram_mb}
    if row.server_group_id:
        deltas["server_group_members"] = 1
    return row.id, row.project_id, deltas, row.server_group_id or ""


class Admission:
    def __init__(self, records: ServerRecords, writer: RecordWriter, quota: Quota) -> None:
        self._records = records
        self._writer = writer
        self._quota = quota
        self._creates: Batcher[Create, list[ServerRow]] = Batcher(
            self._admit_all, max_batch=MAX_BATCH, weight=lambda c: len(c.rows)
        )

    async def admit(self, ctx: RequestContext, rows: list[ServerRow], min_count: int):
        """The servers admitted, or the create's error."""
        return await self._creates.submit(Create(ctx, rows, min_count))

    async def _admit_all(self, creates: list[Create]) -> list[list[ServerRow] | StratusError]:
        await self._writer.add([NewRecords(create.ctx, create.rows) for create in creates])
        outcomes = await self._quota.claim_batches(
            [[quota_claim(row) for row in create.rows] for create in creates]
        )
        answers: list[list[ServerRow] | StratusError] = []
        for create, refusal in zip(creates, outcomes, strict=True):
            if refusal is None:
                answers.append(create.rows)
            elif isinstance(refusal, QuotaExceeded) and create.min_count < len(create.rows):
                answers.append(await self._claim_while_it_fits(create, refusal))
            else:
                answers.append(refusal)
        admitted = {row.id for answer in answers if isinstance(answer, list) for row in answer}
        await self._records.remove(
            [row.id for c in creates for row in c.rows if row.id not in admitted]
        )
        return answers

    async def _claim_while_it_fits(
        self, create: Create, refusal: QuotaExceeded
    ) -> list[ServerRow] | StratusError:
        """Server by server up to what fits: the servers that got quota, or the refusal."""
        claimed: list[ServerRow] = []
        for row in create.rows:
            try:
                await self._quota.claim(*quota_claim(row))
            except QuotaExceeded as exc:
                refusal = exc
                break
            claimed.append(row)
        if len(claimed) < create.min_count:
            for row in claimed:
                await self._quota.release(row.id)
            return refusal
        return claimed
