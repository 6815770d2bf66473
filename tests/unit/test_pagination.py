from __future__ import annotations

import pytest

from services.common import pagination
from services.common.errors import InvalidArgument


def test_token_round_trip():
    assert pagination.decode_token(pagination.encode_token(["m1.small"]), arity=1) == ["m1.small"]
    assert pagination.decode_token("", arity=1) is None


@pytest.mark.parametrize(
    "token",
    ["!!!", "bm90IGpzb24=", pagination.encode_token(["a", "b"]), pagination.encode_token({"a": 1})],
)
def test_tampered_tokens_are_refused(token):
    with pytest.raises(InvalidArgument, match="page_token"):
        pagination.decode_token(token, arity=1)
