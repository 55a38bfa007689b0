"""Shared output for the benches: a rich table on stdout and JSON rows."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(
            column,
            justify="left" if column in ("trainer", "compressor", "partition", "case") else "right",
        )
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    Console(width=200).print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_json(path: str | None, rows: Sequence[dict[str, Any]]) -> None:
    if path:
        Path(path).write_text(json.dumps(list(rows), indent=2) + "\n")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
