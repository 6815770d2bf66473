"""Key pairs: public SSH keys a project imports to build servers with.

A key must parse as OpenSSH public key (cryptography does the parsing), RSA
keys need 2048 bits or more, and names are unique in a project (the
database's unique constraint decides a race). Each key pair holds one unit of
the key_pairs quota, keyed by its id.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from services.api_gateway.models import KeyPairRow
from services.api_gateway.peers import Quota
from services.common.context import RequestContext
from services.common.db import Database
from services.common.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound

MIN_RSA_BITS = 2048


def parse_public_key(text: str) -> tuple[str, str]:
    """(key type, SHA256 fingerprint) of an OpenSSH public key line, or a clear error."""
    line = text.strip()
    parts = line.split()
    try:
        if len(parts) < 2 or "\n" in line:
            raise ValueError("expected one line: '<type> <base64 key> [comment]'")
        key = load_ssh_public_key(" ".join(parts[:2]).encode())
        blob = base64.b64decode(parts[1], validate=True)
    except (ValueError, TypeError) as exc:
        raise _invalid(f"not an OpenSSH public key ({exc})") from exc
    except Exception as exc:  # cryptography's UnsupportedAlgorithm and kin
        raise _invalid(f"unsupported key type ({exc})") from exc
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise _invalid(f"RSA keys need at least {MIN_RSA_BITS} bits; this one has {key.key_size}")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return parts[0], f"SHA256:{digest}"


def _invalid(why: str) -> InvalidArgument:
    return InvalidArgument(
        f"key_pair.public_key: {why}",
        code="compute.invalid_public_key",
        field_violations=(FieldViolation("key_pair.public_key", why),),
    )


class KeyPairs:
    def __init__(self, db: Database, quota: Quota) -> None:
        self._db = db
        self._quota = quota

    async def create(self, ctx: RequestContext, name: str, public_key: str) -> KeyPairRow:
        key_type, fingerprint = parse_public_key(public_key)
        row = KeyPairRow(
            id=str(uuid.uuid4()),
            project_id=ctx.project_id,
            name=name,
            public_key=public_key.strip(),
            fingerprint=fingerprint,
            type=key_type,
            created_at=datetime.now(UTC),
        )
        await self._quota.claim(row.id, ctx.project_id, {"key_pairs": 1})
        try:
            async with self._db.transaction() as session:
                session.add(row)
        except IntegrityError as exc:
            await self._quota.release(row.id)
            raise AlreadyExists(
                f"the project has a key pair named {name!r} already; choose another name",
                code="compute.key_pair_exists",
            ) from exc
        return row

    async def get(self, ctx: RequestContext, name: str) -> KeyPairRow:
        async with self._db.snapshot() as session:
            row = await session.scalar(
                select(KeyPairRow).where(
                    KeyPairRow.project_id == ctx.project_id, KeyPairRow.name == name
                )
            )
        if row is None:
            raise NotFound(f"key pair {name!r} does not exist", code="compute.key_pair_not_found")
        return row

    async def list(self, ctx: RequestContext) -> list[KeyPairRow]:
        async with self._db.snapshot() as session:
            query = (
                select(KeyPairRow)
                .where(KeyPairRow.project_id == ctx.project_id)
                .order_by(KeyPairRow.name)
            )
            return list(await session.scalars(query))

    async def delete(self, ctx: RequestContext, name: str) -> None:
        row = await self.get(ctx, name)
        async with self._db.transaction() as session:
            await session.execute(delete(KeyPairRow).where(KeyPairRow.id == row.id))
        await self._quota.release(row.id)
