"""Opaque page tokens for keyset pagination (Google AIP-158).

A token records the sort key of the last item returned; the next page starts
after it, so pages stay stable while rows are added or removed elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import json

from services.common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100


def page_size(requested: int) -> int:
    return requested or DEFAULT_PAGE_SIZE


def encode_token(after: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(after).encode()).decode()


def decode_token(token: str, arity: int) -> list | None:
    """The sort key to continue after, or None for the first page."""
    if not token:
        return None
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        after = None
    if not isinstance(after, list) or len(after) != arity:
        raise InvalidArgument(
            "page_token is not valid; pass the next_page_token of a previous call unchanged",
            code="stratus.invalid_page_token",
        )
    return after
