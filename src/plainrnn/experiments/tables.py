"""The one markdown-table writer every table of ours goes through (reports, sweeps, analyses)."""
from __future__ import annotations


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """``| a | b |`` / ``|---|---|`` / one line a row; cells are strings as they should read."""
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    return "\n".join([line(header), "|---" * len(header) + "|", *map(line, rows)])
