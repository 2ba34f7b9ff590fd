"""Console output: tables and messages on stderr/stdout through rich."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table

console = Console()


def print_table(df: pd.DataFrame, title: str | None = None, float_format: str = "{:.3g}") -> None:
    """Print a DataFrame as a rich table."""
    table = Table(title=title, show_lines=False)
    for column in df.columns:
        table.add_column(
            str(column), justify="right" if pd.api.types.is_numeric_dtype(df[column]) else "left"
        )
    for row in df.itertuples(index=False):
        table.add_row(*(float_format.format(v) if isinstance(v, float) else str(v) for v in row))
    console.print(table)
