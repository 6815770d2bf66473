"""The edge's signing key is made once and kept private; tokens carry the claims Envoy maps."""

from __future__ import annotations

import json
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import jwt
import pytest
from click.testing import CliRunner

from cli.manage import main as manage
from cli.tokens import (
    ISSUER,
    SigningKey,
    ensure_signing_key,
    jwks_path,
    key_path,
    mint_token,
)


def _decode(token: str, key: SigningKey) -> dict:
    return jwt.decode(token, key.private_key.public_key(), algorithms=["ES256"], issuer=ISSUER)


def test_the_key_is_created_once_and_reused(tmp_path):
    first = ensure_signing_key(tmp_path)
    pem = key_path(tmp_path).read_bytes()
    second = ensure_signing_key(tmp_path)
    assert second.kid == first.kid
    assert key_path(tmp_path).read_bytes() == pem


def test_the_private_key_is_readable_by_its_owner_only(tmp_path):
    ensure_signing_key(tmp_path)
    assert stat.S_IMODE(key_path(tmp_path).stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path(tmp_path).parent.stat().st_mode) == 0o700
    # No temporary file is left behind.
    assert sorted(p.name for p in key_path(tmp_path).parent.iterdir()) == [
        "jwks.json",
        "signing_key.pem",
    ]


def test_concurrent_first_starts_agree_on_one_key(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        kids = set(pool.map(lambda _: ensure_signing_key(tmp_path).kid, range(8)))
    assert len(kids) == 1


def test_the_jwks_holds_the_public_key_under_the_tokens_kid(tmp_path):
    key = ensure_signing_key(tmp_path)
    jwks = json.loads(jwks_path(tmp_path).read_text())
    [jwk] = jwks["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["kid"]) == ("EC", "P-256", "ES256", key.kid)
    assert "d" not in jwk  # never the private part
    token = mint_token(key, project="p", user="u", roles=["member"], ttl=timedelta(minutes=1))
    assert jwt.get_unverified_header(token)["kid"] == key.kid
    public = jwt.PyJWK(jwk).key
    assert jwt.decode(token, public, algorithms=["ES256"], issuer=ISSUER)["project"] == "p"


def test_minted_claims_are_what_the_edge_maps_to_headers():
    key = SigningKey.generate()
    token = mint_token(
        key, project="p1", user="alice", roles=["member", "admin"], ttl=timedelta(hours=2)
    )
    claims = _decode(token, key)
    # Roles are one comma-separated string: Envoy forwards a list claim as base64 JSON.
    assert {k: claims[k] for k in ("iss", "sub", "project", "roles")} == {
        "iss": "stratus",
        "sub": "alice",
        "project": "p1",
        "roles": "member,admin",
    }
    assert claims["exp"] - claims["iat"] == 7200


def test_absent_identity_parts_are_absent_claims():
    key = SigningKey.generate()
    claims = _decode(mint_token(key, project=None, user=None, roles=[], ttl=timedelta(1)), key)
    assert not {"sub", "project", "roles"} & claims.keys()


@pytest.mark.parametrize("role", ["admin,member", "Admin", "", "x y"])
def test_role_names_that_would_not_survive_the_header_are_refused(role):
    with pytest.raises(ValueError, match="role"):
        mint_token(SigningKey.generate(), project="p", user="u", roles=[role], ttl=timedelta(1))


def test_token_create_prints_a_token_for_the_state_dirs_key(tmp_path):
    key = ensure_signing_key(tmp_path)
    args = ["token", "create", "--project", "p", "--user", "u", "--role", "admin"]
    result = CliRunner().invoke(manage, [*args, "--ttl", "30m", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    claims = _decode(result.output.strip(), key)
    assert (claims["roles"], claims["exp"] - claims["iat"]) == ("admin", 1800)


@pytest.mark.parametrize("ttl", ["0h", "1w", "h", "-5m", "1.5h"])
def test_token_create_refuses_a_ttl_it_cannot_read(tmp_path, ttl):
    ensure_signing_key(tmp_path)
    args = ["token", "create", "--project", "p", "--user", "u", "--ttl", ttl]
    result = CliRunner().invoke(manage, [*args, "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "12h" in result.output


def test_token_create_does_not_make_a_key_the_edge_does_not_know(tmp_path):
    args = ["token", "create", "--project", "p", "--user", "u"]
    result = CliRunner().invoke(manage, [*args, "--state-dir", str(tmp_path / "typo")])
    assert result.exit_code == 1
    assert "no signing key" in result.output
    assert not (tmp_path / "typo").exists()
