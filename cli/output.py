"""How `stratus` prints: aligned tables for people, the API's own JSON for scripts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import click

from cli.session import Session

_FRACTION = re.compile(r"\.\d+(?=Z$)")


def cell(value: Any) -> str:
    """One value as table text: maps as k=v, lists comma-separated, on one line."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    return " ".join(str(value).split())


def timestamp(value: Any) -> str:
    """RFC 3339 as the API writes it, without the fraction of a second."""
    return _FRACTION.sub("", cell(value))


def lookup(document: dict, path: str) -> Any:
    """The value at a dotted path ("fault.message"); None where any step is missing."""
    value: Any = document
    for step in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


@dataclass(frozen=True)
class Column:
    header: str
    path: str
    format: Callable[[Any], str] = cell

    def text(self, document: dict) -> str:
        return self.format(lookup(document, self.path))


def fields(paths: str) -> list[Column]:
    """Rows of a one-resource view from space-separated (dotted) field paths, labelled with
    the API's own field names."""
    return [Column(p, p, timestamp if p.endswith("_time") else cell) for p in paths.split()]


def render_table(rows: Iterable[dict], columns: list[Column]) -> str:
    """A header line and one aligned line per row (no borders, so it greps well)."""
    lines = [[c.header for c in columns]] + [[c.text(row) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def render_fields(document: dict, rows: list[Column]) -> str:
    """One resource, a field per line: name, then value."""
    width = max(len(r.header) for r in rows)
    return "\n".join(f"{r.header.ljust(width)}  {r.text(document)}".rstrip() for r in rows)


def emit(session: Session, document: dict, table: Callable[[], str]) -> None:
    """Print the API's document as JSON with -f json, else the table `table` renders."""
    click.echo(json.dumps(document, indent=2) if session.json else table())
