"""One small log written as a MovieLens folder (ml-100k layout) as generated and with ids relabelled,
and the DAG run on it in process (tests/assets/test_invariance.py).

The log is the synthetic Taobao-shaped generator's (same 30 days as the test-wide dataset in
conftest, so the partitions computed at import fit it) with timestamps floored to ``TS_GRAIN``
seconds: like ML-100K, most events then share their timestamp with others of the same user, and
only ``seq`` (the line number) orders them. Behaviours become ratings (view 3, cart / fav 4, buy 5).
``u.item`` lists every item of the world (items never rated included) and ``u.user`` every user, in
id order of the generated ids; a relabelled copy keeps every row where it is and only replaces ids.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from dagster_support import FAST_OPS, ingest_every_day, local_resources

from orchestration.definitions import all_assets, all_checks
from recsys.sources.movielens import ML100K_FLAG_GENRES
from recsys.synthetic import SyntheticConfig, SyntheticWorld, generate_day
from resources.compute import ComputeResource
from resources.warehouse import Warehouse

TS_GRAIN = 300  # seconds
RATING = {"view": 3, "cart": 4, "fav": 4, "buy": 5}

# Stages that are a deterministic function of the log: no seed, no training.
DETERMINISTIC_ASSETS = [
    "candidates_pop",
    "candidates_itemcf",
    "candidates_swing",
    "candidates_ease",
    "candidates_tgh",
    "candidates_content",
    "pi2i_index",
]
DETERMINISTIC_STAGES = ["pop", "itemcf", "swing", "ease", "tgh", "content", "pi2i_index"]
# Seeded stages (torch, implicit, LightGBM) and what they need.
SEEDED_ASSETS = [
    "candidates_als",
    "candidates_two_tower",
    "event_features",
    "outrank_ranking",
    "selected_features",
    "pi2i_scorer",
    "pi2i_candidates",
    "candidate_pool",
    "ranker_dataset",
    "lgbm_ranker",
    "sequence_ranker",
]
SEEDED_STAGES = ["als", "two_tower", "pi2i", "pool", "lgbm_ranker", "sequence_ranker"]
FULL_CHAIN = DETERMINISTIC_ASSETS + SEEDED_ASSETS
# Feature tables built from the train fold alone (OutRank), and the rankers' valid-fold frame.
TRAIN_ONLY_FEATURES = ("event_features", "outrank_scores", "quality_report", "redundant_pairs", "selected_features", "ranker_valid")
# Models fit on the valid fold only (the rankers learn from it; pi2i_valid is PI2I's valid-fold model).
VALID_FOLD_MODELS = ("pi2i_valid", "lgbm_ranker", "sequence_ranker")


@dataclass(frozen=True)
class Log:
    events: pl.DataFrame  # user_id, item_id, rating, ts (unix seconds): the lines of u.data, in order
    items: pl.DataFrame  # item_id, title, genre (index in ML100K_FLAG_GENRES): the lines of u.item
    users: pl.DataFrame  # user_id, age, gender, occupation, zip: the lines of u.user


def synthetic_log(n_interactions: int, seed: int = 3) -> Log:
    config = SyntheticConfig(n_interactions=n_interactions, seed=seed)
    world = SyntheticWorld.build(config)
    days = [config.start + timedelta(days=d) for d in range(config.n_days)]
    rows = pl.concat([generate_day(world, day) for day in days])
    events = rows.select(
        "user_id",
        "item_id",
        pl.col("event_type").replace_strict(RATING, return_dtype=pl.Int64).alias("rating"),
        (pl.col("ts").dt.epoch("s") // TS_GRAIN * TS_GRAIN).alias("ts"),
    )
    items = world.items().select(
        "item_id",
        pl.col("title") + " (1995)",
        (pl.col("category_id") % (len(ML100K_FLAG_GENRES) - 1) + 1).alias("genre"),
    )
    users = world.users().select(
        "user_id",
        (18 + 7 * pl.col("age_bucket")).alias("age"),
        pl.col("gender"),
        pl.format("tier{}", pl.col("city_tier")).alias("occupation"),
        pl.lit("00000").alias("zip"),
    )
    return Log(events, items, users)


def id_maps(log: Log, seed: int = 11) -> dict[str, pl.DataFrame]:
    """For user_id and item_id: (old, new) with new ids random distinct integers in [1, 20·n]; row order kept."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, frame in (("user_id", log.users), ("item_id", log.items)):
        old = frame[key]
        new = rng.choice(np.arange(1, 20 * old.len() + 1), size=old.len(), replace=False)
        out[key] = pl.DataFrame({"old": old, "new": pl.Series(new, dtype=pl.Int64)})
    return out


def relabel(log: Log, maps: dict[str, pl.DataFrame]) -> Log:
    """The same log with user and item ids replaced through ``maps``; every file keeps its row order."""

    def swap(frame: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
        for key in keys:
            m = maps[key]
            frame = frame.with_columns(pl.col(key).replace_strict(m["old"], m["new"], return_dtype=pl.Int64))
        return frame

    return replace(
        log, events=swap(log.events, ("user_id", "item_id")), items=swap(log.items, ("item_id",)), users=swap(log.users, ("user_id",))
    )


def write_movielens(log: Log, folder: Path) -> Path:
    """``folder`` with u.data (tab), u.item and u.user (pipe, latin-1) in the ml-100k layout."""
    folder.mkdir(parents=True, exist_ok=True)
    log.events.write_csv(folder / "u.data", separator="\t", include_header=False)
    flags = [pl.when(pl.col("genre") == g).then(pl.lit("1")).otherwise(pl.lit("0")) for g in range(len(ML100K_FLAG_GENRES))]
    item_lines = log.items.select(
        pl.concat_str(
            [pl.col("item_id").cast(pl.Utf8), "title", pl.lit("01-Jan-1995"), pl.lit(""), pl.lit("http://x"), *flags],
            separator="|",
        )
    ).to_series()
    (folder / "u.item").write_bytes(("\n".join(item_lines) + "\n").encode("latin-1"))
    user_lines = log.users.select(pl.concat_str([pl.col(c).cast(pl.Utf8) for c in log.users.columns], separator="|")).to_series()
    (folder / "u.user").write_bytes(("\n".join(user_lines) + "\n").encode("latin-1"))
    return folder


def fast_ops(seed: int = 0) -> dict:
    """Small, quick settings (dagster_support.FAST_OPS) with every seed set to ``seed``."""
    ops = {name: {"config": {**body["config"]}} for name, body in FAST_OPS.items()}
    ops["sequence_ranker"]["config"]["params"] = {**ops["sequence_ranker"]["config"]["params"], "epochs": 2}
    ops["evaluation"]["config"]["n_boot"] = 20  # intervals are not compared: bootstrap draws follow user ids
    ops["candidates_als"] = {"config": {"params": {"random_state": seed, "iterations": 5}}}
    ops["lgbm_ranker"] = {"config": {"params": {"seed": seed}}}
    # OutRank's rows sample negatives and controls by a seed: relabelled ids reshuffle them like another seed
    ops["event_features"] = {"config": {"seed": seed, "control_seed": seed}}
    return ops


def run_dag(folder: Path, data_dir: Path, selection: list[str], protocol: str, cutoff: str, seed: int = 0) -> Warehouse:
    """Ingest the MovieLens ``folder`` into ``data_dir``, then materialize the split, ``selection`` and
    evaluation for one cut-off with ``protocol``; every seed (torch, ALS, LightGBM, OutRank's negative and control sampling) is ``seed``."""
    resources = local_resources(data_dir, f"movielens:{folder}", compute=ComputeResource(seed=seed))
    instance = dg.DagsterInstance.ephemeral()
    ingest_every_day(resources, instance)
    ops = {"split": {"config": {"protocol": protocol}}, **fast_ops(seed)}
    for part in (["split", *selection], ["evaluation"]):
        result = dg.materialize(
            [*all_assets, *all_checks],
            selection=part,
            partition_key=cutoff,
            resources=resources,
            instance=instance,
            run_config={"ops": {k: v for k, v in ops.items() if k in part}},
        )
        assert result.success
    return resources["warehouse"]


def fold_test_metrics(warehouse: Warehouse) -> pl.DataFrame:
    """eval.metrics of the test fold: stage, cohort, metric, k, value, n_users, sorted (no run columns, no intervals)."""
    return warehouse.query(
        "SELECT stage, cohort, metric, k, value, n_users FROM eval.metrics WHERE fold = 'test' ORDER BY stage, cohort, metric, k"
    )


def per_user(warehouse: Warehouse, users: pl.DataFrame | None = None) -> pl.DataFrame:
    """eval.per_user (stage, user_id, metric, k, value); with ``users`` (old, new) the ids mapped back to old."""
    frame = warehouse.query("SELECT stage, user_id, metric, k, value FROM eval.per_user")
    if users is not None:
        frame = frame.with_columns(pl.col("user_id").replace_strict(users["new"], users["old"], return_dtype=pl.Int64))
    return frame.sort("stage", "user_id", "metric", "k")


def candidates(warehouse: Warehouse, stage: str, maps: dict[str, pl.DataFrame] | None = None) -> pl.DataFrame:
    """candidates.<stage> (fold, user_id, item_id, score, rank), ids mapped back to old through ``maps``, sorted."""
    table = "pool_ranked" if stage == "pool" else stage  # the pool as a ranked list (what evaluation reads)
    frame = warehouse.query(f"SELECT fold, user_id, item_id, score, rank FROM candidates.{table}")
    if maps is not None:
        for key, m in maps.items():
            frame = frame.with_columns(pl.col(key).replace_strict(m["new"], m["old"], return_dtype=pl.Int64))
    return frame.sort("fold", "user_id", "rank")


def valid_tables(warehouse: Warehouse) -> dict[str, pl.DataFrame]:
    """Everything the valid fold computed, each table sorted by all its columns: the split's train and
    valid rows, the ``fold = 'valid'`` rows of every candidates table, the feature tables built from
    train only (OutRank's without its run_id) and features.ranker_valid."""
    queries = {"staging.split": "SELECT * FROM staging.split WHERE fold IN ('train', 'valid')"}
    names = warehouse.query(
        "SELECT DISTINCT table_name FROM information_schema.columns WHERE table_schema = 'candidates' AND column_name = 'fold' ORDER BY 1"
    )["table_name"].to_list()
    queries |= {f"candidates.{name}": f"SELECT * FROM candidates.{name} WHERE fold = 'valid'" for name in names}
    for name in TRAIN_ONLY_FEATURES:
        queries[f"features.{name}"] = (
            f"SELECT * EXCLUDE (run_id) FROM features.{name}" if name == "outrank_scores" else f"SELECT * FROM features.{name}"
        )
    out = {}
    for name, sql in queries.items():
        frame = warehouse.query(sql)
        out[name] = frame.sort(frame.columns)
    return out


def fold_catalogues(warehouse: Warehouse) -> dict[str, list[int]]:
    """The item catalogue each fold's models were given (assets.common.load_catalogue), and evaluation's
    (as of the end of the test window), as sorted item ids."""
    from assets.common import load_catalogue, load_split

    data = load_split(warehouse)
    histories = {fold: data.fold(fold)[0] for fold in ("valid", "test")}
    histories["evaluation"] = pl.concat([data.fold("test")[0], data.test])
    return {name: sorted(load_catalogue(warehouse, history)["item_id"].to_list()) for name, history in histories.items()}


def valid_fold_models(warehouse: Warehouse) -> dict[str, str]:
    """name -> version (the content hash of the model file) of every model fit on the valid fold."""
    rows = warehouse.query(
        "SELECT name, version FROM models.registry WHERE list_contains($names, name)", {"names": list(VALID_FOLD_MODELS)}
    )
    return dict(rows.iter_rows())
