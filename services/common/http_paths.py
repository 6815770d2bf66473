"""google.api.http path templates as regular expressions.

One rule for the two places that match REST paths before transcoding: the
Envoy routes (envoy/render.py) and the body guard's method lookup.
"""

from __future__ import annotations

import re


def path_pattern(template: str) -> str:
    """An anchored regex for a template such as "/v1/servers/{id}:reboot".

    A variable matches one segment, or what its sub-template says
    ("{name=projects/*/keys/**}"); "**" matches one or more segments.
    """
    pattern = ""
    for part in re.split(r"(\{[^}]*\})", template):
        if part.startswith("{"):
            sub = part[1:-1].partition("=")[2] or "*"
            pattern += "/".join(
                "[^/]+" if s == "*" else ".+" if s == "**" else re.escape(s) for s in sub.split("/")
            )
        else:
            pattern += re.escape(part)
    return f"^{pattern}$"
