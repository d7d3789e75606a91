"""What a person reads on an asset page: markdown tables and PNG plots as metadata."""

from __future__ import annotations

import base64
import io

import dagster as dg
import polars as pl


def md_table(frame: pl.DataFrame, max_rows: int = 30) -> str:
    if frame.is_empty():
        return "_none_"
    cols = frame.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.head(max_rows).iter_rows():
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    if frame.height > max_rows:
        lines.append(f"\n_{frame.height - max_rows} more rows_")
    return "\n".join(lines)


def md(frame: pl.DataFrame, max_rows: int = 30) -> dg.MetadataValue:
    return dg.MetadataValue.md(md_table(frame, max_rows))


def png(fig) -> dg.MetadataValue:
    """A matplotlib figure as an inline PNG (markdown image), closed afterwards."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return dg.MetadataValue.md(f"![plot](data:image/png;base64,{data})")


def figure(width: float = 7.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
