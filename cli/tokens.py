"""The edge's signing key and the bearer tokens it signs.

Envoy's jwt_authn filter verifies every request against the public key set
(JWKS) written here and forwards the token's claims as the identity headers
the services read (services/common/context.py). CLAIM_HEADERS is that
mapping; envoy/render.py renders it, so minting and verifying cannot drift.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from services.common.context import PROJECT_KEY, ROLES_KEY, USER_KEY

ISSUER = "stratus"
ALGORITHM = "ES256"
# Roles a person can be given; services also know "service" (their own calls).
ROLES = ("member", "admin")
# Envoy forwards a list claim as base64 of its JSON (measured on Envoy 1.40),
# so roles travel as one comma-separated string, the form the header has.
CLAIM_HEADERS = {"project": PROJECT_KEY, "sub": USER_KEY, "roles": ROLES_KEY}
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class SigningKey:
    private_key: ec.EllipticCurvePrivateKey
    kid: str

    @classmethod
    def generate(cls) -> SigningKey:
        return cls.from_private_key(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_private_key(cls, private_key: ec.EllipticCurvePrivateKey) -> SigningKey:
        return cls(private_key, _thumbprint(_public_jwk(private_key)))

    def jwks(self) -> dict:
        """The public half, as the key set Envoy reads."""
        jwk = _public_jwk(self.private_key)
        return {"keys": [{**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}]}

    def pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _public_jwk(private_key: ec.EllipticCurvePrivateKey) -> dict:
    return ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)


def _thumbprint(jwk: dict) -> str:
    """RFC 7638 thumbprint: a kid that names the key itself, stable across restarts."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def key_path(state_dir: Path) -> Path:
    return Path(state_dir) / "auth" / "signing_key.pem"


def jwks_path(state_dir: Path) -> Path:
    return Path(state_dir) / "auth" / "jwks.json"


def load_signing_key(state_dir: Path) -> SigningKey:
    """The deployment's key; FileNotFoundError when none was created yet."""
    private_key = serialization.load_pem_private_key(key_path(state_dir).read_bytes(), None)
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path(state_dir)} is not an EC private key")
    return SigningKey.from_private_key(private_key)


def ensure_signing_key(state_dir: Path) -> SigningKey:
    """Create the key on first use, reuse it afterwards; (re)write the public key set.

    The private key is written to a private temporary file and hard-linked into
    place, so two processes starting at once end up with one key, never a torn file.
    """
    path = key_path(state_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".signing_key.")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(SigningKey.generate().pem())
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            os.unlink(tmp)
    key = load_signing_key(state_dir)
    _write_public(jwks_path(state_dir), json.dumps(key.jwks(), indent=1) + "\n")
    return key


def _write_public(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o644)  # public: whoever runs Envoy may read it
    os.replace(tmp, path)


def mint_token(
    key: SigningKey,
    *,
    project: str | None,
    user: str | None,
    roles: Iterable[str],
    ttl: timedelta,
    issuer: str = ISSUER,
    now: float | None = None,
) -> str:
    """A signed bearer token; a claim given as None (or no roles) is left out."""
    roles = list(roles)
    bad = [r for r in roles if not _ROLE_NAME.match(r)]
    if bad:
        raise ValueError(f"invalid role name(s) {', '.join(bad)}: use lowercase letters")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": issuer,
        "iat": issued,
        "exp": issued + int(ttl.total_seconds()),
    }
    if user is not None:
        claims["sub"] = user
    if project is not None:
        claims["project"] = project
    if roles:
        claims["roles"] = ",".join(roles)
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
