"""Loading the shared inputs of downstream assets from the warehouse.

Who is evaluated (docs/evaluation.md §1, "Who each protocol evaluates"): under temporal and
leave-last-out the users with target events and some history (warm users); under the ``files``
protocol every target user, as RecBole does, users without history getting the popularity fallback. ``fold_truth`` and
``load_candidates`` apply that rule from the split's params, so callers need not know the protocol.
"""

import json

import polars as pl

from recsys.metrics.fallback import complete_with_popularity
from recsys.schema import INTERACTION_SCHEMA, conform
from recsys.split import Split
from resources import settings
from resources.warehouse import Warehouse, load_sql

DUCKDB_POOL = "duckdb_writer"
GPU_POOL = "gpu"


def engine_kinds(*kinds: str) -> set[str]:
    """An asset's kinds (the UI's badges), with "spark" when RECDAG_ENGINE=spark runs part of it there."""
    return {*kinds, "spark"} if settings.engine() == "spark" else set(kinds)


FOLDS = ("valid", "test")


def every_target_user(params: dict) -> bool:
    """True when a split's protocol evaluates every target user, not only warm ones (files)."""
    return params.get("protocol") == "files"


def load_fold_events(warehouse: Warehouse, fold: str) -> pl.DataFrame:
    """One fold's events (train, valid or test) in the canonical event order, as load_split holds them."""
    return conform(warehouse.query_file("staging/split_fold", {"fold": fold}), INTERACTION_SCHEMA)


def load_split(warehouse: Warehouse) -> Split:
    parts = {fold: load_fold_events(warehouse, fold) for fold in ("train", "valid", "test")}
    params = warehouse.query("SELECT CAST(params AS VARCHAR) AS p FROM staging.split_params").row(0)[0]
    return Split(parts["train"], parts["valid"], parts["test"], json.loads(params))


def dataset_label(split: Split, source) -> str:
    """The ``dataset`` of eval.metrics rows: the split's own label (files protocol: the split
    folder's name, e.g. ``ml-100k``) when it has one, else the configured source's name."""
    return split.params.get("dataset") or source.name


def load_items(warehouse: Warehouse) -> pl.DataFrame:
    return warehouse.table("raw.items")


def load_catalogue(warehouse: Warehouse, history: pl.DataFrame) -> pl.DataFrame:
    """raw.items as known at the end of ``history`` (recsys.split.catalogue_as_of): what a fold's models may use."""
    from recsys.split import catalogue_as_of

    return catalogue_as_of(load_items(warehouse), warehouse.query_file("staging/item_first_seen"), history)


def load_users(warehouse: Warehouse) -> pl.DataFrame:
    return warehouse.table("raw.users")


def with_fold(recs: pl.DataFrame, fold: str) -> pl.DataFrame:
    """A recommendation frame as rows of a candidates.<stage> table."""
    return recs.with_columns(pl.lit(fold).alias("fold")).select("fold", "user_id", "item_id", "score", "rank")


def warm_truth(target: pl.DataFrame, history: pl.DataFrame, every_user: bool = False) -> pl.DataFrame:
    """Truth (user_id, item_id) of a fold: every target interaction of the evaluated users.

    Those are the warm users (target events and some history), or every target user when
    ``every_user`` is true (``fold_truth`` applies the split's rule)."""
    from recsys.split import relevant

    truth = relevant(target)
    return truth if every_user else truth.join(target_users(target, history).to_frame(), on="user_id", how="semi")


def fold_truth(split: Split, fold: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(history, target, truth) of ``fold`` with the split's rule of who is evaluated."""
    history, target = split.fold(fold)
    return history, target, warm_truth(target, history, every_user=every_target_user(split.params))


def sample_truth(target: pl.DataFrame, truth: pl.DataFrame, seed: int, budget: int | None = None):
    """(truth of the evaluated users, UserSample): every truth user while they fit ``budget`` (default
    RECDAG_EVAL_USERS), else a seeded uniform sample of ``budget`` of them, drawn over the users in
    order of their first target event (ts, seq), so relabelling ids never changes who
    (recsys.metrics.sampling). Under budget the truth is returned as it is, unfiltered."""
    from recsys.metrics.sampling import sample_in_event_order
    from resources import settings

    budget = settings.eval_users() if budget is None else budget
    evaluated = truth.select(pl.col("user_id").cast(pl.Int64)).unique()["user_id"]
    kept, info = sample_in_event_order(evaluated, target.with_columns(pl.col("user_id").cast(pl.Int64)), budget, seed)
    if not info.sampled:  # everyone: no filtering
        return truth, info
    return truth.filter(pl.col("user_id").cast(pl.Int64).is_in(kept.implode())), info


def target_users(target: pl.DataFrame, history: pl.DataFrame) -> pl.Series:
    """Users evaluated in a fold: those with target events and some history (warm users)."""
    return target.select("user_id").unique().join(history.select("user_id").unique(), on="user_id", how="semi").sort("user_id")["user_id"]


TRAIN_USERS_SEED = 0  # the valid fold's sample (fold_sample): one seed, so every stage draws the same users


def fold_sample(fold: str, target: pl.DataFrame, history: pl.DataFrame, every_user: bool = False):
    """(the users a fold is evaluated on, sorted by id; UserSample).

    The test fold: its evaluated users, never sampled (its lists are what is served). The valid fold: the
    same, within RECDAG_TRAIN_USERS (default 20,000), else a seeded uniform sample of that many, drawn over
    the users in order of their first valid-window event (recsys.metrics.sampling), so relabelling ids never
    changes who. Evaluated users: the warm ones (``target_users``), or every target user when
    ``every_user`` (the ``files`` protocol; ``every_target_user``). Every stage that makes or reads
    valid-fold lists (channels, the pool, the rankers' frame, retrieval_evaluation, final_stage) takes
    its valid users from here, so they all see the same users."""
    from recsys.metrics.sampling import UserSample, sample_in_event_order
    from resources import settings

    users = target.select("user_id").unique().sort("user_id")["user_id"] if every_user else target_users(target, history)
    if fold != "valid":
        return users, UserSample(n_users=users.len(), n_sampled=users.len(), budget=users.len(), seed=TRAIN_USERS_SEED)
    return sample_in_event_order(users, target, settings.train_users(), seed=TRAIN_USERS_SEED)


def fold_users(fold: str, target: pl.DataFrame, history: pl.DataFrame, every_user: bool = False, with_sample: bool = False):
    """The users a channel makes ``fold``'s lists for, sorted by id: the warm users of ``fold_sample``
    (users without history get the popularity fallback in ``load_candidates`` instead). Within the
    budget, exactly ``target_users(target, history)``. ``with_sample``: (users, fold_sample's UserSample)."""
    users, sample = fold_sample(fold, target, history, every_user)
    if every_user:
        users = users.filter(users.is_in(target_users(target, history).implode()))
    return (users, sample) if with_sample else users


EVAL_COLUMNS = [
    "run_id",
    "evaluated_at",
    "dataset",
    "protocol",
    "fold",
    "stage",
    "cohort",
    "metric",
    "k",
    "value",
    "ci_low",
    "ci_high",
    "n_users",
    "cutoff",
]


def eval_tags(run_id: str, split: Split, source) -> dict:
    """The keyword arguments every eval.metrics row of this run carries: run, dataset, protocol, cut-off."""
    return {
        "run_id": run_id,
        "dataset": dataset_label(split, source),
        "protocol": split.params.get("protocol", "?"),
        "cutoff": split.params.get("cutoff_partition"),
    }


def eval_rows(
    metrics: pl.DataFrame,
    *,
    run_id: str,
    dataset: str,
    protocol: str,
    fold: str,
    stage: str,
    cohort: str = "all",
    cutoff: str | None = None,
) -> pl.DataFrame:
    """Long eval.metrics rows from (metric, k, value, n_users[, ci_low, ci_high][, cohort]) rows.

    ``cutoff`` is the rolling-origin cut-off partition the run evaluated ("pooled" for rows pooled
    across cut-offs by evaluation_summary)."""
    from resources.warehouse import utcnow

    frame = metrics
    for column in ("ci_low", "ci_high"):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.Float64).alias(column))
    if "cohort" not in frame.columns:
        frame = frame.with_columns(pl.lit(cohort).alias("cohort"))
    return frame.select(
        pl.lit(run_id).alias("run_id"),
        pl.lit(utcnow()).alias("evaluated_at"),
        pl.lit(dataset).alias("dataset"),
        pl.lit(protocol).alias("protocol"),
        pl.lit(fold).alias("fold"),
        pl.lit(stage).alias("stage"),
        pl.col("cohort").cast(pl.Utf8),
        pl.col("metric").cast(pl.Utf8),
        pl.col("k").cast(pl.Int32),
        pl.col("value").cast(pl.Float64),
        pl.col("ci_low").cast(pl.Float64),
        pl.col("ci_high").cast(pl.Float64),
        pl.col("n_users").cast(pl.Int64),
        pl.lit(cutoff, pl.Utf8).alias("cutoff"),
    )


def fold_completion(warehouse: Warehouse, fold: str, complete: bool | None = None) -> tuple[pl.Series, pl.DataFrame] | None:
    """(the users every stage must have a ``fold`` list for, the fold's history user_id/item_id) when the
    split's rule completes lists (``complete`` None: the split's params decide; true under the ``files``
    protocol), else None. The users are the fold's evaluated users (the valid fold's sample past
    RECDAG_TRAIN_USERS); the history gives their popularity fallback."""
    with warehouse.connect(read_only=True) as con:
        if complete is None:
            has_params = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'staging' AND table_name = 'split_params'"
            ).fetchone()[0]
            params = json.loads(con.execute("SELECT CAST(params AS VARCHAR) FROM staging.split_params").fetchone()[0]) if has_params else {}
            complete = every_target_user(params)
        if not complete:
            return None
        target_fold, history_folds = {"valid": ("valid", ["train"]), "test": ("test", ["train", "valid"])}[fold]
        target = con.execute(load_sql("staging/split_fold"), {"fold": target_fold}).pl().select("user_id", "ts", "seq")
        history = pl.concat(
            [con.execute(load_sql("staging/split_fold"), {"fold": f}).pl().select("user_id", "item_id") for f in history_folds]
        )
    return fold_sample(fold, target, history, every_user=True)[0], history


def load_candidates(
    warehouse: Warehouse,
    stage: str,
    fold: str,
    complete: bool | None = None,
    user_range: tuple[int, int] | None = None,
    completion: tuple[pl.Series, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """A stage's recommendation frame for ``fold``.

    With ``complete`` (default: the split's rule, true under the ``files`` protocol) every target
    user of the fold (valid: of ``fold_sample``) the stage has no list for gets the popularity fallback of the fold's history
    (recsys.metrics.fallback), as long as the stage's longest list. ``user_range`` (lo, hi): only the users
    with lo <= user_id <= hi, the same rows as the whole frame filtered to them (fallbacks as long as the
    stage's longest list over the whole fold); ``completion``: ``fold_completion``'s answer, computed once by
    a caller that reads many ranges (it then decides, not ``complete``)."""
    where, args = "fold = $fold", {"fold": fold}
    if user_range is not None:
        where, args = where + " AND user_id BETWEEN $lo AND $hi", {**args, "lo": int(user_range[0]), "hi": int(user_range[1])}
    recs = warehouse.query(f"SELECT user_id, item_id, score, rank FROM candidates.{stage} WHERE {where} ORDER BY user_id, rank", args)
    recs = recs.with_columns(pl.col("rank").cast(pl.Int32))
    if completion is None and (complete or complete is None):
        completion = fold_completion(warehouse, fold, complete)
    if completion is None:
        return recs
    users, history = completion
    depth = None  # the whole fold's frame: its own longest list
    if user_range is not None:
        users = users.filter(users.is_between(user_range[0], user_range[1]))
        depth = warehouse.query(f"SELECT max(rank) AS k FROM candidates.{stage} WHERE fold = $fold", {"fold": fold})["k"][0]
        depth = int(depth) if depth is not None else None
    return complete_with_popularity(recs, users, history, k=depth)


class StagedTables:
    """Tables written block by block and published together: a table's first block replaces a staging
    table ``<schema>._building_<name>``, later blocks are appended to it (same columns, else an error
    naming the table), and ``publish`` renames every staging table into place in one transaction, so a
    run that fails midway leaves the previous tables in place, never a partial one."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self.schemas: dict[str, pl.Schema] = {}

    @staticmethod
    def staging_name(table: str) -> str:
        schema, name = table.split(".")
        return f"{schema}._building_{name}"

    def add(self, table: str, block: pl.DataFrame) -> None:
        first = self.schemas.get(table)
        if first is None:
            self.schemas[table] = block.schema
            self.warehouse.write_table(self.staging_name(table), block)
        elif block.schema != first:
            raise ValueError(f"{table}: a block's columns differ from the first block's: {block.schema} vs {first}")
        else:
            self.warehouse.append(self.staging_name(table), block)

    def publish(self) -> None:
        with self.warehouse.connect() as con:
            con.execute("BEGIN TRANSACTION")
            for table in self.schemas:
                con.execute(f"DROP TABLE IF EXISTS {table}")
                con.execute(f"ALTER TABLE {self.staging_name(table)} RENAME TO {table.split('.')[1]}")
            con.execute("COMMIT")


def user_ranges(ids: pl.Series, block_users: int) -> list[tuple[int, int]]:
    """Consecutive (lo, hi) user_id ranges of at most ``block_users`` of ``ids`` each, in id order;
    ``block_users`` <= 0: one range over all of them; no ids: none."""
    ids = ids.unique().sort().to_numpy()
    if len(ids) == 0:
        return []
    step = block_users if block_users > 0 else len(ids)
    return [(int(ids[s]), int(ids[min(s + step, len(ids)) - 1])) for s in range(0, len(ids), step)]
