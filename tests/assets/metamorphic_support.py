"""Writing the same small log twice, as recorded and with ids relabelled, and running the DAG on it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from dagster_support import ingest_every_day, local_resources

from assets.partitions import latest_cutoff
from orchestration.definitions import all_assets, all_checks
from recsys.synthetic import SyntheticConfig, SyntheticWorld, generate_day, render_lines
from resources.warehouse import Warehouse

# The stages whose output is a deterministic function of the log (no seeded training).
DETERMINISTIC = ["candidates_pop", "candidates_itemcf", "candidates_swing", "candidates_ease", "candidates_tgh", "pi2i_index"]
# Everything from the channels to the rankers (neural and tree stages seeded; small settings).
FULL_CHAIN = [
    *DETERMINISTIC,
    "candidates_als",
    "candidates_two_tower",
    "candidates_content",
    "pi2i_scorer",
    "pi2i_candidates",
    "candidate_pool",
    "event_features",
    "outrank_ranking",
    "selected_features",
    "ranker_dataset",
    "lgbm_ranker",
    "sequence_ranker",
]
FAST = {
    "candidates_two_tower": {"config": {"params": {"epochs": 1}}},
    "pi2i_scorer": {"config": {"params": {"epochs": 1, "depth": 100}}},
    "sequence_ranker": {"config": {"params": {"epochs": 2}}},
    "evaluation": {"config": {"n_boot": 50}},
}


def taobao_lines(n_interactions: int, seed: int = 3) -> pl.DataFrame:
    """A synthetic log as Taobao CSV columns (user, item, category, behaviour, unix ts), in source order.

    Same dates as the test-wide dataset (conftest: synthetic, 30 days from 2017-11-25), so the
    partitions computed at import fit it."""
    config = SyntheticConfig(n_interactions=n_interactions, seed=seed)
    world = SyntheticWorld.build(config)
    days = [config.start + timedelta(days=d) for d in range(config.n_days)]
    lines = pl.concat([render_lines(world, generate_day(world, day)).to_frame() for day in days])
    cols = lines["raw_line"].str.split_exact(",", 5).struct.rename_fields(["u", "i", "c", "b", "t", "s"]).struct.unnest()
    return cols.select("u", "i", "c", "b", "t")


def relabel(lines: pl.DataFrame, seed: int = 11) -> pl.DataFrame:
    """User and item ids replaced by a random permutation of 1..n; row order (the source order) kept."""
    rng = np.random.default_rng(seed)
    out = lines
    for col in ("u", "i"):
        ids = lines[col].unique().sort()
        mapping = dict(zip(ids.to_list(), [str(v) for v in rng.permutation(np.arange(1, ids.len() + 1))]))
        out = out.with_columns(pl.col(col).replace_strict(mapping))
    return out


def write_csv(lines: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines.write_csv(path, include_header=False)
    return path


def run_dag(csv: Path, data_dir: Path, selection: list[str], protocol: str, cutoff: str | None = None) -> dict:
    """Ingest ``csv`` into ``data_dir``, then materialize ``selection`` (and evaluation) for one cut-off."""
    resources = local_resources(data_dir, f"taobao:{csv}")
    instance = dg.DagsterInstance.ephemeral()
    ingest_every_day(resources, instance)
    key = cutoff or latest_cutoff()
    ops = {"split": {"config": {"protocol": protocol}}, **FAST}
    for part in (["split", *selection], ["evaluation"]):
        result = dg.materialize(
            [*all_assets, *all_checks],
            selection=part,
            partition_key=key,
            resources=resources,
            instance=instance,
            run_config={"ops": {k: v for k, v in ops.items() if k in part}},
        )
        assert result.success
    return {"warehouse": resources["warehouse"], "resources": resources, "instance": instance}


def eval_test_metrics(warehouse: Warehouse) -> pl.DataFrame:
    """eval.metrics of the test fold without run-specific columns, sorted."""
    return warehouse.query(
        "SELECT stage, cohort, metric, k, value, n_users FROM eval.metrics WHERE fold = 'test' ORDER BY stage, cohort, metric, k"
    )


def valid_tables(warehouse: Warehouse) -> dict[str, pl.DataFrame]:
    """Every warehouse table with a ``fold`` column restricted to fold ``valid``, plus features.ranker_valid, sorted."""
    names = warehouse.query(
        "SELECT table_schema || '.' || table_name AS name FROM information_schema.columns "
        "WHERE column_name = 'fold' AND table_schema IN ('candidates', 'features') ORDER BY 1"
    )["name"].to_list()
    out = {}
    for name in names:
        frame = warehouse.query(f"SELECT * FROM {name} WHERE fold = 'valid'")
        out[name] = frame.sort(frame.columns)
    ranker = warehouse.table("features.ranker_valid")
    out["features.ranker_valid"] = ranker.sort(ranker.columns)
    return out


def model_versions(warehouse: Warehouse) -> dict[str, str]:
    """Content hash of every model trained on the valid fold (PI2I's valid model and the rankers)."""
    rows = warehouse.query("SELECT name, version FROM models.registry WHERE name IN ('pi2i_valid', 'lgbm_ranker', 'sequence_ranker')")
    return dict(rows.iter_rows())
