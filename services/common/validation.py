"""Enforce the protovalidate rules declared in the protos.

Every request message is checked before a servicer sees it, so a rule written
in a .proto is a rule the service keeps; each violation names its field.
"""

from __future__ import annotations

import protovalidate
from google.protobuf.message import Message

from services.common.errors import FieldViolation, InvalidArgument

_validator = protovalidate.Validator()


def _field_path(violation) -> str:
    parts: list[str] = []
    for element in violation.proto.field.elements:
        name = element.field_name
        subscript = element.subscript
        if subscript is not None:
            key = getattr(subscript, "value", subscript)
            name += f"[{key!r}]" if isinstance(key, str) else f"[{key}]"
        parts.append(name)
    return ".".join(parts)


def validate_request(message: Message) -> None:
    """Raise InvalidArgument listing every violated rule of message."""
    violations = _validator.collect_violations(message)
    if not violations:
        return
    fields = tuple(
        FieldViolation(field=_field_path(v) or "(request)", description=v.proto.message)
        for v in violations
    )
    raise InvalidArgument(
        "; ".join(f"{f.field}: {f.description}" for f in fields),
        code="stratus.invalid_field",
        field_violations=fields,
    )
