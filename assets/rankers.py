"""ranker_dataset → lgbm_ranker · sequence_ranker (→ final_stage → recommendations, assets/serving.py), with the promotion gate.

Each ranker is judged (check ``ndcg_regression``, ERROR, non-blocking) against the last promoted
model with the same name, dataset, protocol and cut-off rule (recsys.promotion); the verdict goes
on its models.registry row and into quality.check_results. A failing gate never stops
``evaluation``: its consequence is in ``recommendations``, which serves and promotes only a ranker
whose gate passed (docs/operations.md, "Promotion gate").
"""

import json
from dataclasses import asdict

import dagster as dg
import numpy as np
import polars as pl

from assets.catalog import catalog, observe, results, table_spec
from assets.common import (
    DUCKDB_POOL,
    GPU_POOL,
    TRAIN_USERS_SEED,
    StagedTables,
    engine_kinds,
    every_target_user,
    fold_sample,
    load_catalogue,
    load_fold_events,
    load_items,
    load_users,
    with_fold,
)
from assets.features import selected_features
from assets.metadata import md, table_metadata
from assets.partitions import cutoff_partitions
from recsys.event_features import with_selected_attributes
from recsys.promotion import (
    DEFAULT_NOISE_Z,
    comparison_key,
    gate_measures,
    gate_verdict,
    holdout_ndcg,
)
from recsys.rankers import feature_columns
from recsys.rankers.features import CAT_PREFIX, LABEL, cutoff_mode_for
from recsys.rankers.lgbm import fit_feature_sets, rank_frame
from recsys.rankers.stacking import eligible, label_window, stacked_rows, within_budget
from resources.compute import ComputeResource
from resources.datasets import DatasetSource
from resources.engine import SqlEngine
from resources.model_store import ModelStore
from resources.ranker_frames import fold_frames
from resources.training_windows import TrainingWindows
from resources.warehouse import Warehouse

RANKER_STAGES = ("lgbm_ranker", "sequence_ranker")


class RankerDatasetConfig(dg.Config):
    label_mode: str = "binary"  # binary | graded
    # The rankers' training budget is RECDAG_TRAIN_USERS (default 20,000; resources.settings.train_users):
    # past it, every channel made valid-fold candidates only for a seeded uniform sample of that many valid
    # users (assets.common.fold_sample), so the pool and this frame hold only them and LightGBM's and the
    # sequence ranker's cost follows the budget, not the log. ML-100K has < 1,000 such users (all kept).
    # The test fold is never sampled: its lists are what is served.
    # Both folds' frames are built and written per block of this many users (user_id order;
    # resources.ranker_frames.fold_frames), so memory follows the block, not the fold; the tables
    # are identical for every value (each is written under a staging name and renamed into place once
    # complete). 0 = one block, the whole fold in memory.
    block_users: int = 20_000


@dg.multi_asset(
    specs=[
        table_spec(
            "ranker_dataset",
            "features.ranker_valid",
            "features.ranker_valid: the rankers' training frame, the valid fold's pools labelled by the valid window.",
            deps=["candidate_pool", selected_features],
            kinds=engine_kinds("polars", "duckdb"),
        ),
        table_spec(
            "ranker_test_dataset",
            "features.ranker_test",
            "features.ranker_test: the test fold's pools with the same features, no labels (test truth is for evaluation only).",
            deps=["candidate_pool", selected_features],
            kinds=engine_kinds("polars", "duckdb"),
        ),
    ],
    can_subset=True,  # selecting either key runs the step, which writes both (catalog.results)
    pool=DUCKDB_POOL,
    group_name="rankers",
    partitions_def=cutoff_partitions,
)
def ranker_dataset(context: dg.AssetExecutionContext, config: RankerDatasetConfig, warehouse: Warehouse, engine: SqlEngine):
    # no fold is loaded into memory: the features come from the engine; the valid users' sample needs only the
    # valid fold's events and train's user ids
    params = _split_params(warehouse)
    selected = warehouse.table("features.selected_features")["feature"].to_list()
    users, user_features = with_selected_attributes(load_users(warehouse), "user_id", selected)
    items, item_features = with_selected_attributes(load_items(warehouse), "item_id", selected)
    chosen = [f for f in user_features if f not in item_features] + [f for f in item_features if f not in user_features]
    rows, valid_stats, train_sample = {}, None, None
    for fold in ("valid", "test"):
        # this fold's pool only, in user order (the blocks are user ranges)
        fold_pool = warehouse.query(
            "SELECT * EXCLUDE (fold) FROM candidates.pool WHERE fold = $fold ORDER BY user_id, item_id", {"fold": fold}
        )
        if fold == "valid":
            target = load_fold_events(warehouse, "valid")
            history_users = warehouse.query("SELECT DISTINCT user_id FROM staging.split WHERE fold = 'train'")
            fold_pool, train_sample = _train_users(fold_pool, history_users, target, every_target_user(params))
            del target, history_users
        # the history features and labels: sql/features/ranker_history.sql on the engine, where the split lies;
        # the channel features and codes per block of users (resources/ranker_frames.py)
        blocks = fold_frames(
            engine,
            warehouse,
            fold_pool,
            fold,
            items,
            users,
            selected_features=chosen,
            # leave-last-out: time-relative features as of each user's own last history event
            cutoff=cutoff_mode_for(params.get("protocol", "")),
            label_mode=config.label_mode,
            block_users=config.block_users,
        )
        stats = _write_blocks(warehouse, f"features.ranker_{fold}", blocks)
        rows[fold] = stats["rows"]
        if fold == "valid":
            valid_stats = stats
        del fold_pool, blocks
    valid_result = dg.MaterializeResult(
        asset_key="ranker_dataset",
        metadata={
            **table_metadata(warehouse, "features.ranker_valid"),
            "rows": dg.MetadataValue.json(rows),
            "selected_attributes": ", ".join(chosen) or "none",
            "n_features": valid_stats["n_features"],
            "valid_label_rate": valid_stats["positive_rows"] / valid_stats["rows"] if valid_stats["rows"] else float("nan"),
            "valid_users_with_a_positive_in_pool": valid_stats["users_with_a_positive"],
            "valid_users": valid_stats["users"],
            "train_users": train_sample.describe("valid users"),  # RECDAG_TRAIN_USERS: "N of M valid users (seeded uniform sample, seed 0)"
            "built_on": f"{engine.kind} (sql/features/ranker_history.sql)",
        },
    )
    test_result = dg.MaterializeResult(asset_key="ranker_test_dataset", metadata=table_metadata(warehouse, "features.ranker_test"))
    yield from results(context, valid_result, test_result)


def _write_blocks(warehouse: Warehouse, table: str, blocks) -> dict:
    """Write the frames of ``blocks`` (disjoint users, in user order) as ``table`` through a staging table
    renamed into place once complete (``StagedTables``). Returns what the metadata needs, counted over the
    blocks: rows, rows with a positive label, users, users with a positive label (a user is in one block
    only) and the number of feature columns."""
    staged = StagedTables(warehouse)
    stats = {"rows": 0, "positive_rows": 0, "users": 0, "users_with_a_positive": 0, "n_features": 0}
    for block in blocks:
        if not staged.schemas:
            stats["n_features"] = len(feature_columns(block))
        staged.add(table, block)
        stats["rows"] += block.height
        stats["users"] += block["user_id"].n_unique()
        if LABEL in block.columns:
            stats["positive_rows"] += int((block[LABEL] > 0).sum())
            stats["users_with_a_positive"] += block.filter(pl.col(LABEL) > 0)["user_id"].n_unique()
    if not staged.schemas:
        raise ValueError(f"{table}: no block was built, nothing to write")
    staged.publish()
    return stats


def _train_users(pool: pl.DataFrame, history: pl.DataFrame, target: pl.DataFrame, every_user: bool = False):
    """(the valid pool of the users the rankers train on, UserSample): the pool's users among the valid
    fold's users (``fold_sample``: all of them within RECDAG_TRAIN_USERS, else the seeded sample every
    valid-fold stage uses). The channels already made lists for those users only, so this keeps the pool
    as it is unless it was built under another budget. ``history``: at least the train fold's user_id
    column (only who has history matters)."""
    users, sample = fold_sample("valid", target, history, every_user)
    return (pool.filter(pl.col("user_id").is_in(users.cast(pool.schema["user_id"]).implode())) if sample.sampled else pool), sample


class RankerConfig(dg.Config):
    params: dict = {}  # overrides of the ranker's params dataclass
    # LightGBM only: candidate settings tried on top of `params`; the one with the best NDCG@10 on the
    # held-out valid users wins (model selection on valid, never on test).
    params_grid: list[dict] = [{}, {"num_leaves": 7, "min_data_in_leaf": 50}]
    # LightGBM only: OutRank's feature lists (features.selected_features) tried, each × params_grid;
    # the best held-out valid NDCG@10 wins, ties to the earlier list. ["mi"] alone halves the fits.
    feature_selections: list[str] = ["mi", "3mr"]
    k: int = 100  # ranked list length written for evaluation
    # LightGBM only, its cost budget: past this many rows of labelled lists (users with a positive; the others
    # teach LambdaRank nothing), the fits train on whole lists of a seeded uniform sample of those users within
    # the budget (recsys.metrics.sampling.sample_within_size, drawn over their first valid event; metadata
    # train_rows says N of M). ML-100K and the fixtures are far below it. 0 = every row.
    max_train_rows: int = 1_000_000
    # LightGBM only: the test fold (features.ranker_test, never sampled) is read from DuckDB and scored in
    # blocks of this many users, keeping each user's top k, so memory follows the block; the lists are
    # identical for every value. 0 = the whole table at once. The sequence ranker scores it the same way
    # (each block with only its users' history), in blocks rounded up to whole torch batches of its
    # predict_batch_users (256): 5,000 -> 5,120 users. A block of 5,000 users x 300 candidates is 1.5M rows
    # of ~85 columns, held as a polars frame plus a feature matrix: about 1 GB each in float64 (from the row
    # width; bench/results_step.md has what a step peaked at).
    score_block_users: int = 5_000
    # Sequence ranker only, its cost budget: each epoch trains on a fresh seeded sample of at most this many
    # users' candidate lists (ML-100K: < 1,000, all of them), and early stopping scores at most
    # max_valid_users held-out users per epoch (all are scored once at the end); 0 = no cap. `params` wins.
    max_samples_per_epoch: int = 20_000
    max_valid_users: int = 5_000
    # promotion gate: held-out valid NDCG@10 (recsys.promotion.holdout_ndcg) may fall at most this share below the
    # last promoted comparable model's, beyond noise: a ranker below that floor fails only when the shortfall is
    # more than gate_noise_z standard errors of the difference (0 = the point rule, fail on any shortfall)
    max_ndcg_drop: float = 0.10
    gate_noise_z: float = DEFAULT_NOISE_Z
    # LightGBM only: stack the labelled lists of up to this many earlier cut-offs of the same comparison key (a
    # backtest's or a schedule's earlier partitions, archived by each run under <data dir>/training_windows) as more
    # training rows, newest first, within max_train_rows; only windows whose labels ended before this one's began
    # (recsys.rankers.stacking). A split without a label window (leave-last-out, files) stacks nothing. 0 = none.
    # Off by default: on ML-100K's backtest the gate's held-out NDCG@10 of the pipeline's own LightGBM with 1-2 windows
    # stacked averaged -0.0007 against none at the three cut-offs that had earlier windows (valid;
    # bench/results_stack_windows.md); the offline bench's +0.0141 fitted every feature column, not OutRank's lists.
    stack_windows: int = 0


def _split_params(warehouse: Warehouse) -> dict:
    return json.loads(warehouse.query("SELECT CAST(params AS VARCHAR) AS p FROM staging.split_params").row(0)[0])


def split_key(warehouse: Warehouse, source: DatasetSource) -> tuple[str, str, str]:
    """(dataset, protocol, cutoff_rule) of the current split. The dataset is the full spec
    (synthetic:30000, taobao:<csv>), so another size or file is never compared with this one."""
    return comparison_key(source.dataset, _split_params(warehouse))


def _save_judged(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    store: ModelStore,
    key: tuple[str, str, str],
    name: str,
    payload: bytes,
    params: dict,
    metrics: dict,
    config: RankerConfig,
) -> tuple[dict, dg.AssetCheckResult]:
    """The promotion gate: judge the model against the last promoted comparable one (like with like:
    recsys.promotion.gate_measures), save it with the verdict on its registry row, record the check;
    returns (saved, check result)."""
    dataset, protocol, rule = key
    promoted = store.latest(warehouse, name, promoted_only=True, dataset=dataset, protocol=protocol, cutoff_rule=rule)
    measured = gate_measures(metrics, promoted["metrics"] if promoted else None)
    ndcg, baseline = measured["ndcg"], measured["baseline"]
    passed, details = gate_verdict(
        ndcg, baseline, config.max_ndcg_drop, measured["se"], measured["baseline_se"], noise_z=config.gate_noise_z
    )
    details |= {
        "measure": measured["measure"],
        "dataset": dataset,
        "protocol": protocol,
        "cutoff_rule": rule,
        "baseline_version": promoted["version"] if baseline is not None else None,
        "baseline_run_id": promoted["run_id"] if baseline is not None else None,
    }
    run_id = context.run.run_id
    saved = store.save(
        warehouse,
        name,
        payload,
        params,
        metrics,
        run_id,
        dataset=dataset,
        protocol=protocol,
        cutoff_rule=rule,
        gate_passed=passed,
        gate_details=details,
    )
    details["version"] = saved["version"]
    warehouse.record_check(name, "ndcg_regression", None, passed, "ERROR", details, run_id)
    (context.log.info if passed else context.log.warning)(f"{name} promotion gate {'passed' if passed else 'FAILED'}: {details['reason']}")
    result = dg.AssetCheckResult(
        check_name="ndcg_regression",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=details["reason"],
        metadata={
            "valid_ndcg10": float(ndcg),
            "measure": measured["measure"],
            "promoted_ndcg10": float(baseline) if baseline is not None else -1.0,
            "floor": float(details["floor"]) if details["floor"] is not None else -1.0,
            "noise_allowance": float(details["noise_allowance"]),
            "model_version": saved["version"],
            "compared_with": promoted["version"] if baseline is not None else "none",
            "comparison_key": " | ".join(key),
        },
    )
    return saved, result


def _write_ranked(warehouse: Warehouse, stage: str, ranked: pl.DataFrame, holdout: pl.DataFrame | None, k: int) -> None:
    """The test fold's lists, and the held-out valid users' lists, each from a model blind to their labels (what
    final_stage compares with the channels on the same users)."""
    parts = [with_fold(ranked, "test")]
    if holdout is not None and holdout.height:
        parts.append(with_fold(rank_frame(holdout, holdout["score"].to_numpy(), k), "valid"))
    warehouse.write_table(f"candidates.{stage}", pl.concat(parts, how="vertical"))


def _ndcg_gate_spec(asset: str) -> dg.AssetCheckSpec:
    # Not blocking: evaluation must record every run, whatever the gate says. The consequence of a
    # failure is in `recommendations` (no serving, no promotion); ERROR so the alert sensor raises it.
    return dg.AssetCheckSpec(
        "ndcg_regression",
        asset=asset,
        blocking=False,
        description=(
            "ERROR (promotion gate, non-blocking): held-out valid NDCG@10 (every labelled valid user, out of fold) not more "
            "than max_ndcg_drop below the last promoted model of the same name, dataset, protocol and cut-off rule, beyond "
            "gate_noise_z standard errors of the difference; a failing ranker is neither served nor promoted"
        ),
    )


@dg.asset(
    deps=["ranker_dataset", "ranker_test_dataset"],
    pool=DUCKDB_POOL,
    group_name="rankers",
    partitions_def=cutoff_partitions,
    kinds={"lightgbm", "duckdb"},
    **catalog("candidates.lgbm_ranker", layer="models"),  # a model: its test-fold ranking is its table
    check_specs=[_ndcg_gate_spec("lgbm_ranker")],
    description="LightGBM LambdaRank grouped by user, early stopping on NDCG@10 of held-out valid users; test-fold ranking in candidates.lgbm_ranker.",
)
def lgbm_ranker(
    context: dg.AssetExecutionContext, config: RankerConfig, warehouse: Warehouse, model_store: ModelStore, source: DatasetSource
):
    # only the labelled lists (bounded by RECDAG_TRAIN_USERS, then by max_train_rows) leave DuckDB
    valid, train_rows = _labelled_rows_within(warehouse, "features.ranker_valid", config.max_train_rows)
    context.log.info(f"lgbm_ranker: trains on {train_rows}")
    key = split_key(warehouse, source)
    extra, stacked = _stacked_windows(warehouse, key, valid, config)
    if stacked:
        context.log.info(f"lgbm_ranker: + {extra['user_id'].n_unique():,} lists of earlier windows {stacked}")
    # OutRank's two feature lists (MI-only, 3MR) × the settings grid, judged on held-out valid users
    feature_sets = _feature_sets(warehouse, valid, config.feature_selections)
    choice = fit_feature_sets(valid, feature_sets, config.params, config.params_grid, log=context.log.info, extra_train=extra)
    del extra
    model, params, tried = choice.model, choice.params, choice.tried
    context.log.info(f"lgbm_ranker: feature selection {choice.selection!r} won on held-out valid NDCG@10 {choice.scores}")
    ranked = [model.recommend(block, k=config.k) for block in _user_blocks(warehouse, "features.ranker_test", config.score_block_users)]
    _write_ranked(warehouse, "lgbm_ranker", pl.concat(ranked, how="vertical"), model.holdout_scores, config.k)
    by_selection = {name: (None if np.isnan(v) else v) for name, v in choice.scores.items()}
    metrics = {
        "valid_ndcg10": model.valid_ndcg10,
        "best_iteration": model.best_iteration,
        "n_train_users": model.n_train_users,
        "n_valid_users": model.n_valid_users,
        **{f"valid_ndcg10_{name}": v for name, v in by_selection.items() if v is not None},
        **(holdout_ndcg(model.holdout_scores) or {}),
        "n_stacked_lists": model.n_extra_lists,
    }
    registry_params = {
        **asdict(params),
        "stack_windows": config.stack_windows,
        "stacked_windows": stacked,
        "feature_selection": choice.selection,
        "feature_selection_valid_ndcg10": by_selection,
        "selected_features": [c.removeprefix(CAT_PREFIX) for c in model.feature_cols if c.startswith(CAT_PREFIX)],
    }
    saved, gate = _save_judged(context, warehouse, model_store, key, "lgbm_ranker", model.to_bytes(), registry_params, metrics, config)
    importance = model.feature_importance().sort("gain", descending=True)
    observe(context, warehouse, "models.registry")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse, "candidates.lgbm_ranker"),
            **metrics,
            "model_version": saved["version"],
            "model_path": saved["path"],
            "feature_importance": md(importance, 40),
            "settings_tried": md(tried),
            "train_rows": train_rows,  # max_train_rows: "N of M rows of labelled lists ..." or "all M rows ..."
            "stacked_windows": dg.MetadataValue.json(stacked),  # earlier cut-offs' label windows trained on too
            "feature_selection": choice.selection,
            "feature_selection_lists": dg.MetadataValue.json(
                {n: [c.removeprefix(CAT_PREFIX) for c in cols if c.startswith(CAT_PREFIX)] for n, cols in feature_sets.items()}
            ),
        },
        check_results=[gate],
    )


def _stacked_windows(
    warehouse: Warehouse, key: tuple[str, str, str], valid: pl.DataFrame, config: RankerConfig
) -> tuple[pl.DataFrame | None, list[str]]:
    """(earlier windows' rows to stack, shaped like ``valid``, or None; their label windows as text), then this
    cut-off's labelled lists archived for later cut-offs. Windows are taken newest first while the rows stay
    within ``max_train_rows`` with ``valid``'s."""
    bounds = label_window(_split_params(warehouse))
    if bounds is None:
        return None, []
    archive = TrainingWindows(warehouse.data_dir)
    usable = eligible(archive.windows(key), bounds, config.stack_windows)
    if config.max_train_rows and usable:
        usable = within_budget(usable, archive.row_counts(usable), config.max_train_rows - valid.height)
    extra = stacked_rows(valid, [w.rows for w in usable])
    archive.save(key, bounds, valid)
    return extra, [f"{w.start:%Y-%m-%d %H:%M} .. {w.end:%Y-%m-%d %H:%M}" for w in usable]


def _labelled_rows_within(warehouse: Warehouse, table: str, budget: int) -> tuple[pl.DataFrame, str]:
    """(the rows LightGBM trains on, read from ``table``; the words for it): the labelled lists (users with
    a positive; the others teach LambdaRank nothing and ``LGBMRanker.fit`` drops them) when they hold at most
    ``budget`` rows (0 = no budget), else those lists of a seeded uniform sample of the labelled users whose
    rows stay within ``budget`` (``sample_within_size``, users in order of their first valid-window event, so
    relabelling ids never changes who). List sizes are counted in DuckDB and only the kept users' rows are
    read, so memory follows the budget, not the table."""
    from recsys.metrics.sampling import sample_within_size, users_in_event_order

    sizes = warehouse.query_file("features/labelled_list_sizes", {"table": table})
    rows, users = int(sizes["n"].sum()), sizes.height
    if not budget or rows <= budget:
        kept, said = sizes["user_id"], f"all {rows:,} rows of labelled lists ({users:,} users with a positive)"
    else:
        target = warehouse.query_file("staging/split_fold", {"fold": "valid"})
        order = users_in_event_order(target.filter(pl.col("user_id").is_in(sizes["user_id"].implode())))
        kept = sample_within_size(order, sizes, budget, seed=TRAIN_USERS_SEED)
        said = None
    out = warehouse.query_file("features/rows_of_users", {"table": table, "users": kept.sort().to_list()})
    said = said or (
        f"{out.height:,} of {rows:,} rows of labelled lists ({kept.len():,} of {users:,} users with a positive; "
        f"seeded uniform sample, seed {TRAIN_USERS_SEED})"
    )
    return out, said


def _user_blocks(warehouse: Warehouse, table: str, block_users: int):
    """``table``'s rows in blocks of at most ``block_users`` users (consecutive user_id ranges, in user
    order), each read from DuckDB on its own; ``block_users`` <= 0 or an empty table: one block."""
    ids = warehouse.query(f"SELECT DISTINCT user_id FROM {table} ORDER BY user_id")["user_id"].to_numpy() if block_users > 0 else []
    if len(ids) == 0:
        yield warehouse.table(table)
        return
    for s in range(0, len(ids), block_users):
        lo, hi = ids[s], ids[min(s + block_users, len(ids)) - 1]
        yield warehouse.query(f"SELECT * FROM {table} WHERE user_id BETWEEN $lo AND $hi", {"lo": int(lo), "hi": int(hi)})


def _longest_list(warehouse: Warehouse, table: str) -> int | None:
    """The most rows one user has in ``table`` (None when empty): the width every block's lists are
    padded to, so a block of users is scored exactly as within the whole table."""
    n = warehouse.query(f"SELECT max(n) AS n FROM (SELECT count(*) AS n FROM {table} GROUP BY user_id)")["n"][0]
    return None if n is None else int(n)


def _block_history(block: pl.DataFrame, *folds: pl.DataFrame) -> pl.DataFrame:
    """The events of ``block``'s users in ``folds``, concatenated in that order (Split.fold's
    train + valid, filtered): a user's sequence reads only that user's events, in their order."""
    users = block["user_id"].unique()
    return pl.concat([f.filter(pl.col("user_id").is_in(users.cast(f.schema["user_id"]).implode())) for f in folds], how="vertical")


def _feature_sets(warehouse: Warehouse, frame: pl.DataFrame, selections: list[str]) -> dict[str, list[str]]:
    """Per OutRank selection in ``selections`` ('mi', '3mr'; features.selected_features), the
    frame's feature columns it allows: every non-categorical column plus ``cat__f`` for the list's
    features the frame has (ranker_dataset encodes the union). A table without a ``selection``
    column is one list, 'mi'."""
    base = [c for c in feature_columns(frame) if not c.startswith(CAT_PREFIX)]
    selected = warehouse.table("features.selected_features")
    if "selection" not in selected.columns:
        selected, selections = selected.with_columns(pl.lit("mi").alias("selection")), ["mi"]
    sets = {}
    for name in selections or ["mi"]:
        names = selected.filter(pl.col("selection") == name)["feature"].to_list()
        sets[name] = base + [CAT_PREFIX + f for f in dict.fromkeys(names) if CAT_PREFIX + f in frame.columns]
    return sets


@dg.asset(
    deps=["ranker_dataset", "ranker_test_dataset"],
    pool=GPU_POOL,
    group_name="rankers",
    partitions_def=cutoff_partitions,
    kinds={"torch", "duckdb"},
    check_specs=[_ndcg_gate_spec("sequence_ranker")],
    **catalog("candidates.sequence_ranker", layer="models"),  # a model: its test-fold ranking is its table
    description="BERT-style transformer reranker (transformers BertModel) over the user's recent items, trained listwise; through the compute resource.",
)
def sequence_ranker(
    context: dg.AssetExecutionContext,
    config: RankerConfig,
    warehouse: Warehouse,
    model_store: ModelStore,
    compute: ComputeResource,
    source: DatasetSource,
):
    from recsys.rankers.sequence import SequenceRanker, SequenceRankerParams

    # the histories only (Split.fold: valid fold -> train; test fold -> train + valid), never the test events
    train_events, valid_events = load_fold_events(warehouse, "train"), load_fold_events(warehouse, "valid")
    runtime = compute.runtime(log=context.log.info)
    budget = {"max_samples_per_epoch": config.max_samples_per_epoch or None, "max_valid_users": config.max_valid_users or None}
    params = SequenceRankerParams(**{**budget, **config.params})
    items = load_catalogue(warehouse, train_events)  # the vocabulary the valid fold may know
    # the labelled lists only (fit drops the others), bounded by RECDAG_TRAIN_USERS; each epoch samples them.
    # Handed over without a name here, so fit holds the only reference and frees the frame once it has its lists.
    model = SequenceRanker(params).fit(
        _labelled_rows_within(warehouse, "features.ranker_valid", 0)[0], train_events, items, runtime=runtime
    )
    del items
    # The test fold (never sampled) per block of users, each with its users' history (train + valid). The
    # lists are padded to the table's longest list and a block is whole torch batches (score_block_users
    # rounded up to a multiple of predict_batch_users), so every batch holds the same users in the same
    # shape as when the table is scored at once: the scores are bit-identical (a batch's size can change
    # float32 rounding).
    width = _longest_list(warehouse, "features.ranker_test")
    batch = params.predict_batch_users
    blocks = _user_blocks(warehouse, "features.ranker_test", -(-config.score_block_users // batch) * batch)
    ranked = [model.recommend(block, _block_history(block, train_events, valid_events), config.k, runtime, width) for block in blocks]
    _write_ranked(warehouse, "sequence_ranker", pl.concat(ranked, how="vertical"), model.holdout_scores, config.k)
    metrics = {
        "valid_ndcg10": model.valid_ndcg10,
        "best_epoch": model.best_epoch,
        "device": runtime.device,
        **(holdout_ndcg(model.holdout_scores) or {}),
    }
    key = comparison_key(source.dataset, _split_params(warehouse))
    saved, gate = _save_judged(context, warehouse, model_store, key, "sequence_ranker", model.to_bytes(), asdict(params), metrics, config)
    observe(context, warehouse, "models.registry")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse, "candidates.sequence_ranker"),
            **metrics,
            "model_version": saved["version"],
            "train_losses": dg.MetadataValue.json([round(x, 4) for x in model.train_losses]),
            "epoch_samples": dg.MetadataValue.json(model.epoch_samples),  # users (candidate lists) trained on per epoch
            "valid_users_scored_per_epoch": dg.MetadataValue.text(f"{model.n_valid_scored} of {model.n_valid_users}"),
            "compute": dg.MetadataValue.json(compute.describe()),
        },
        check_results=[gate],
    )


def current_rankers(context, warehouse: Warehouse, store: ModelStore, key: tuple[str, str, str]) -> dict[str, dict]:
    """Per ranker, its newest registry row (the model whose lists are in candidates.<ranker>), when it
    was trained on the current dataset, protocol and cut-off rule."""
    current = {}
    for name in RANKER_STAGES:
        row = store.latest(warehouse, name)
        if row is None or not warehouse.table_exists(f"candidates.{name}"):
            continue
        if (row["dataset"], row["protocol"], row["cutoff_rule"]) != key:
            context.log.warning(f"{name}: newest model {row['version']} was trained on {row['dataset']} / {row['cutoff_rule']}, not {key}")
            continue
        current[name] = {**row, "valid_ndcg10": row["metrics"].get("valid_ndcg10")}
    return current
