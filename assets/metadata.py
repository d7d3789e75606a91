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


HEADLINE_METRICS = ("ndcg", "recall", "hit_rate")


def headline_table(rows: pl.DataFrame) -> dg.MetadataValue:
    """The headline as a Dagster table (shown on the asset page without a click): one row per stage,
    NDCG / Recall / HitRate at one K with their 95% intervals and the users behind them, best NDCG first.

    ``rows``: stage, metric, k, value, ci_low, ci_high, n_users (one K; cohort ``all``)."""
    part = rows.filter(pl.col("metric").is_in(HEADLINE_METRICS))
    k = int(part["k"][0]) if part.height else 0
    wide = (
        part.select("stage", "metric", "value", "ci_low", "ci_high", "n_users")
        .pivot(on="metric", index=["stage", "n_users"], values=["value", "ci_low", "ci_high"])
        .sort("value_ndcg", descending=True, nulls_last=True)
    )
    names = {metric: (f"{metric}@{k}", f"{metric} 95% low", f"{metric} 95% high") for metric in HEADLINE_METRICS}
    columns = [dg.TableColumn("stage", "string", description="candidate channel, fused pool or ranker")]
    for metric, (value, low, high) in names.items():
        columns += [
            dg.TableColumn(value, "float", description=f"mean {metric}@{k} over users"),
            dg.TableColumn(low, "float", description=f"bootstrap 95% interval of {metric}@{k}: lower end"),
            dg.TableColumn(high, "float", description=f"bootstrap 95% interval of {metric}@{k}: upper end"),
        ]
    columns.append(dg.TableColumn("users", "int", description="users (units) evaluated"))
    records = []
    for r in wide.iter_rows(named=True):
        data = {"stage": r["stage"], "users": int(r["n_users"])}
        for metric, triple in names.items():
            for name, stat in zip(triple, ("value", "ci_low", "ci_high")):
                v = r.get(f"{stat}_{metric}")
                data[name] = None if v is None else round(float(v), 4)
        records.append(dg.TableRecord(data))
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))
