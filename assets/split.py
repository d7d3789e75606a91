"""split: train / valid / test by protocol (RECDAG_SPLIT: temporal, leave_last_out, files:<dir>)."""

import json
from pathlib import Path

import dagster as dg
import polars as pl

from assets.common import DUCKDB_POOL
from assets.ingestion import interactions
from assets.metadata import md
from recsys import split as splitting
from resources import settings
from resources.warehouse import Warehouse


class SplitConfig(dg.Config):
    protocol: str = ""  # empty = RECDAG_SPLIT (default "temporal")
    valid_frac: float = 0.1
    test_frac: float = 0.1


def make_split(protocol: str, frame: pl.DataFrame, config: SplitConfig) -> splitting.Split:
    if protocol == "temporal":
        return splitting.temporal_split(frame, config.valid_frac, config.test_frac)
    if protocol == "leave_last_out":
        return splitting.leave_last_out_split(frame)
    if protocol.startswith("files:"):
        from recsys.sources.recbole import read_benchmark_split

        folder = Path(protocol.split(":", 1)[1])
        parts = read_benchmark_split(folder)
        return splitting.files_split(
            parts["train"].interactions, parts["valid"].interactions, parts["test"].interactions, source=str(folder)
        )
    raise ValueError(f"unknown split protocol {protocol!r}; expected temporal, leave_last_out or files:<dir>")


# New partitions refresh the split only when nothing upstream is missing and every blocking check passed.
SPLIT_AUTOMATION = (
    dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
)


@dg.asset(
    deps=[interactions],
    automation_condition=SPLIT_AUTOMATION,
    pool=DUCKDB_POOL,
    group_name="split",
    kinds={"duckdb", "polars"},
    description="staging.split: every interaction with its fold (train / valid / test) and the protocol's parameters.",
)
def split(context: dg.AssetExecutionContext, config: SplitConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    protocol = config.protocol or settings.split_spec()
    frame = warehouse.query_file("staging/split_input")
    result = make_split(protocol, frame, config)
    folded = pl.concat(
        [
            part.with_columns(pl.lit(name).alias("fold"))
            for name, part in (("train", result.train), ("valid", result.valid), ("test", result.test))
        ],
        how="vertical",
    )
    params = {**result.params, "protocol_spec": protocol}
    with warehouse.connect() as con:
        con.begin()
        warehouse.write_table("staging.split", folded, con=con)
        warehouse.write_table("staging.split_params", pl.DataFrame({"params": [json.dumps(params, default=str)]}), con=con)
        con.commit()
    summary = (
        folded.group_by("fold")
        .agg(
            pl.len().alias("rows"),
            pl.col("user_id").n_unique().alias("users"),
            pl.col("item_id").n_unique().alias("items"),
            pl.col("ts").min().alias("from"),
            pl.col("ts").max().alias("to"),
        )
        .sort("from")
    )
    context.log.info(f"split {protocol}: {summary.to_dicts()}")
    return dg.MaterializeResult(
        metadata={"protocol": protocol, "params": dg.MetadataValue.json(json.loads(json.dumps(params, default=str))), "folds": md(summary)}
    )
