"""What a person reads on an asset page: markdown tables and PNG plots as metadata, and the
catalog's table metadata of a DuckDB table (``table_metadata``)."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

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


PAIRED_COLUMNS = (
    ("stage", "string", "the reference: the ranker chosen on valid (or the served stage)"),
    ("versus", "string", "the stage it is compared with"),
    ("mean_diff", "float", "mean over users of reference − versus"),
    ("ci_low", "float", "paired bootstrap 95% interval of the mean difference: lower end (per comparison)"),
    ("ci_high", "float", "paired bootstrap 95% interval of the mean difference: upper end (per comparison)"),
    ("p_value", "float", "two-sided paired t-test p-value"),
    ("p_holm", "float", "Holm-adjusted p-value across the comparisons of the table"),
    ("decided_95", "bool", "p_holm < 0.05"),
    ("n_users", "int", "users (units) compared"),
)


def paired_table(paired: pl.DataFrame | None) -> dg.MetadataValue:
    """The Holm-corrected paired tests as a Dagster table (shown inline): one row per comparison, decided ones first.
    The one-sentence verdicts are left to ``paired_verdicts`` (a long text column would make every row tall)."""
    columns = [dg.TableColumn(name, kind, description=text) for name, kind, text in PAIRED_COLUMNS]
    records = []
    if paired is not None and paired.height:
        for r in paired.sort(["decided_95", "p_holm"], descending=[True, False]).iter_rows(named=True):
            data = {}
            for name, kind, _ in PAIRED_COLUMNS:
                v = r.get(name)
                if v is None:
                    data[name] = None
                elif kind == "float":
                    data[name] = float(f"{float(v):.4g}")
                elif kind == "int":
                    data[name] = int(v)
                elif kind == "bool":
                    data[name] = bool(v)
                else:
                    data[name] = str(v)
            records.append(dg.TableRecord(data))
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def paired_verdicts(paired: pl.DataFrame | None) -> dg.MetadataValue:
    """One sentence per comparison, decided ones first, as a markdown list."""
    if paired is None or paired.is_empty() or "verdict" not in paired.columns:
        return dg.MetadataValue.md("_none_")
    rows = paired.sort(["decided_95", "p_holm"], descending=[True, False])["verdict"].to_list()
    return dg.MetadataValue.md("\n".join(f"- {v}" for v in rows))


_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


def table_metadata(warehouse, table: str, where: str | None = None, params: dict | None = None) -> dict[str, Any]:
    """The catalog's metadata of the DuckDB table ``schema.table``, read from the warehouse after a write:
    ``dagster/table_name``, ``dagster/column_schema`` (DESCRIBE: column names, DuckDB types, nullability)
    and ``dagster/row_count`` (the whole table); with ``where`` (a SQL condition with ``$`` parameters
    from ``params``, e.g. a partition's days) also ``dagster/partition_row_count``, the rows it selects."""
    if not _TABLE_NAME.match(table):
        raise ValueError(f"not a plain schema.table name: {table!r}")
    with warehouse.connect(read_only=True) as con:
        described = con.execute(f"DESCRIBE {table}").fetchall()
        rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        selected = con.execute(f"SELECT count(*) FROM {table} WHERE {where}", params or {}).fetchone()[0] if where else None
    columns = [
        dg.TableColumn(name, str(kind), constraints=dg.TableColumnConstraints(nullable=null != "NO")) for name, kind, null, *_ in described
    ]
    metadata: dict[str, Any] = {
        "dagster/table_name": table,
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "dagster/row_count": int(rows),
    }
    if selected is not None:
        metadata["dagster/partition_row_count"] = int(selected)
    return metadata
