"""The rankers' frames: sql/features/ranker_history.sql on the engine, finished per block of users.

The statement computes every history feature and label of a fold's pool pairs where the split lies
(the warehouse under DuckDB, the lake under Spark); ``recsys.rankers.features.RankerParts.finish`` adds
the channel features (per-user normalisations of the pool's own scores) and the categorical codes to
each block of users read back, so memory follows the block.

API::

    for frame in fold_frames(engine, warehouse, pool, "valid", items, users, selected,
                             cutoff="global", label_mode="binary", block_users=20_000): ...
    frame = build_ranker_frame(pool, history, items, users, selected, target, cutoff=None)   # in memory
    for frame in iter_ranker_frames(pool, history, items, users, ..., block_users=7): ...     # in memory
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl

from recsys.rankers.features import (
    CATEGORIES_TABLE,
    PAIRS_TABLE,
    USER_CUTOFFS_TABLE,
    RankerParts,
    history_params,
    item_categories,
    pool_pairs,
)
from resources.engine import SqlEngine

SQL = "features/ranker_history"
SPLIT_COLUMNS = {
    "user_id": pl.Int64,
    "item_id": pl.Int64,
    "event_type": pl.Utf8,
    "value": pl.Float64,
    "ts": pl.Datetime("us"),
    "event_date": pl.Date,
    "seq": pl.Int64,
    "fold": pl.Utf8,
}


def user_blocks(pool: pl.DataFrame, block_users: int | None) -> Iterator[tuple[pl.DataFrame, int, int]]:
    """(the pool's rows of a block of users, its first user_id, its last) per block of at most
    ``block_users`` users in user_id order (None or <= 0: one block). An empty pool is one empty block."""
    if pool.height == 0:
        yield pool, 0, -1
        return
    pool = pool.sort("user_id", maintain_order=True)
    uid = pool["user_id"].cast(pl.Int64).to_numpy()
    user_ids, starts = np.unique(uid, return_index=True)
    starts = np.append(starts, len(uid))
    step = block_users if block_users and block_users > 0 else len(user_ids)
    for s in range(0, len(user_ids), step):
        e = min(s + step, len(user_ids))
        yield pool.slice(starts[s], starts[e] - starts[s]), int(user_ids[s]), int(user_ids[e - 1])


def fold_frames(
    engine: SqlEngine,
    warehouse,
    pool: pl.DataFrame,
    fold: str,
    items: pl.DataFrame,
    users: pl.DataFrame | None,
    selected_features: Sequence[str] = (),
    *,
    cutoff="global",
    label_mode: str = "binary",
    raw_scores: bool = False,
    block_users: int | None = None,
) -> Iterator[pl.DataFrame]:
    """The frame of ``fold``'s pool (valid: history = train, labelled by the valid fold; test: history =
    train + valid, no label) per block of users, from staging.split where the engine keeps it (the
    warehouse, or the lake under Spark). The statement runs once for the fold; its rows are kept as
    ``features.ranker_history_<fold>`` (or the lake's results table) while the blocks are read."""
    if fold not in ("valid", "test"):
        raise ValueError(f"fold must be 'valid' or 'test', got {fold!r}")
    labelled = fold == "valid"
    params, user_cutoffs = history_params(cutoff, label_mode=label_mode, with_valid=fold == "test", labelled=labelled)
    parts = RankerParts.of(pool, users, items, selected_features, raw_scores)
    frames = {PAIRS_TABLE: pool_pairs(pool), CATEGORIES_TABLE: item_categories(items), USER_CUTOFFS_TABLE: user_cutoffs}
    table = engine.table_beside(SQL, params, frames, warehouse, f"features.ranker_history_{fold}")
    try:
        for block, lo, hi in user_blocks(pool, block_users):
            yield parts.finish(block, table.read_users(lo, hi), labelled)
    finally:
        table.drop()


def split_frame(history: pl.DataFrame, target: pl.DataFrame | None = None) -> pl.DataFrame:
    """A staging.split-shaped frame from in-memory folds: ``history`` as train, ``target`` as valid (a
    frame without ``seq`` is taken in its row order, as recsys.schema.with_event_position does)."""
    folds = []
    for name, frame in (("train", history), ("valid", target)):
        if frame is None:
            continue
        if "seq" not in frame.columns:
            frame = frame.with_row_index("seq", offset=1)
        missing = [c for c in ("user_id", "item_id", "ts") if c not in frame.columns]
        if missing:
            raise ValueError(f"{'history' if name == 'train' else 'target'} frame lacks columns {missing}")
        if "event_date" not in frame.columns:
            frame = frame.with_columns(pl.col("ts").dt.date().alias("event_date"))
        folds.append(
            frame.with_columns(pl.lit(name).alias("fold")).select(
                pl.col(c).cast(t) if c in frame.columns or c == "fold" else pl.lit(None, t).alias(c) for c, t in SPLIT_COLUMNS.items()
            )
        )
    return pl.concat(folds)


def iter_ranker_frames(
    pool: pl.DataFrame,
    history: pl.DataFrame,
    items: pl.DataFrame,
    users: pl.DataFrame | None,
    selected_features: Sequence[str] = (),
    target: pl.DataFrame | None = None,
    *,
    cutoff=None,
    label_mode: str = "binary",
    raw_scores: bool = False,
    block_users: int | None = None,
    engine: SqlEngine | None = None,
) -> Iterator[pl.DataFrame]:
    """The frame of ``pool`` over in-memory ``history`` (labelled by ``target`` when given), per block of
    at most ``block_users`` users; the statement runs on ``engine`` (default: an in-memory DuckDB)."""
    if history.height == 0 and (cutoff is None or isinstance(cutoff, str)):
        raise ValueError("history is empty and no cutoff was given: features have no reference time")
    labelled = target is not None
    params, user_cutoffs = history_params(cutoff, label_mode=label_mode, labelled=labelled)
    parts = RankerParts.of(pool, users, items, selected_features, raw_scores)
    frames = {
        "staging.split": split_frame(history, target),
        PAIRS_TABLE: pool_pairs(pool),
        CATEGORIES_TABLE: item_categories(items),
        USER_CUTOFFS_TABLE: user_cutoffs,
    }
    rows = (engine or SqlEngine(engine="duckdb")).query_frames(SQL, frames, params)
    for block, lo, hi in user_blocks(pool, block_users):
        yield parts.finish(block, rows.filter(pl.col("user_id").is_between(lo, hi)), labelled)


def build_ranker_frame(pool, history, items, users, selected_features=(), target=None, **kwargs) -> pl.DataFrame:
    """``iter_ranker_frames``' frame in one block (the keyword arguments are its)."""
    (frame,) = iter_ranker_frames(pool, history, items, users, selected_features, target, block_users=None, **kwargs)
    return frame
