"""Evaluation protocols: split an interactions frame into train / valid / test.

API (every frame is an interactions frame, recsys.schema.INTERACTION_SCHEMA)::

    split = temporal_split(interactions, valid_frac=0.1, test_frac=0.1)
    split = leave_last_out_split(interactions)
    split = files_split(train, valid, test)          # e.g. RecBole *.train/valid/test.inter
    split = leave_last_out_of(*parts_of(folded))     # folds assigned elsewhere (sql/staging/split_*.sql)
    history, target = split.fold("valid")            # (train, valid)
    history, target = split.fold("test")             # (train + valid, test)
    truth = relevant(target, pl.col("value") >= 4)   # user_id, item_id (deduplicated)
    truth = drop_cold(truth, history)                # optional: users/items unseen in history

``Split.params`` records the protocol, cut timestamps, fractions asked and obtained, and row /
user / item counts, so an evaluation row can say exactly what it was measured on.

Protocols
- temporal_quantile (``temporal_split``): one global cut on time. t1, t2 are timestamps at quantiles 1 - valid_frac - test_frac
  and 1 - test_frac of ts; train = ts < t1, valid = t1 <= ts < t2, test = ts >= t2. Rows sharing a
  timestamp never straddle a cut, so obtained fractions can differ slightly from those asked.
- leave_last_out: per user, in the canonical event order (ts, seq): the last interaction is test,
  the second to last valid, the rest train; users with fewer than 3 interactions stay in train.
- files: given splits, validated (schema, non-empty train and test) and wrapped unchanged; every test
  user is evaluated, those without history by the popularity fallback (RecBole's convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from recsys.schema import INTERACTION_SCHEMA, conform

FOLDS: tuple[str, ...] = ("valid", "test")


@dataclass
class Split:
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    params: dict = field(default_factory=dict)

    def fold(self, name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(history, target): "valid" -> (train, valid); "test" -> (train + valid, test)."""
        if name == "valid":
            return self.train, self.valid
        if name == "test":
            return pl.concat([self.train, self.valid], how="vertical"), self.test
        raise ValueError(f"unknown fold {name!r}; expected one of {FOLDS}")


def _counts(frame: pl.DataFrame) -> dict:
    return {
        "rows": frame.height,
        "users": frame["user_id"].n_unique(),
        "items": frame["item_id"].n_unique(),
    }


def _describe(protocol: str, train: pl.DataFrame, valid: pl.DataFrame, test: pl.DataFrame, **extra) -> dict:
    total = train.height + valid.height + test.height
    params = {"protocol": protocol, **extra}
    for name, frame in (("train", train), ("valid", valid), ("test", test)):
        for key, value in _counts(frame).items():
            params[f"n_{name}_{key}"] = value
        params[f"{name}_frac_obtained"] = frame.height / total if total else 0.0
    # cold users in a target cannot be personalized from history; report them instead of hiding them
    seen_train = train.select("user_id").unique()
    seen_hist = pl.concat([train.select("user_id"), valid.select("user_id")]).unique()
    params["n_valid_users_cold"] = valid.select("user_id").unique().join(seen_train, on="user_id", how="anti").height
    params["n_test_users_cold"] = test.select("user_id").unique().join(seen_hist, on="user_id", how="anti").height
    return params


def _check(interactions: pl.DataFrame, what: str) -> pl.DataFrame:
    try:
        return conform(interactions, INTERACTION_SCHEMA)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None


def _check_fractions(valid_frac: float, test_frac: float) -> None:
    if not (0.0 <= valid_frac and 0.0 <= test_frac and valid_frac + test_frac < 1.0):
        raise ValueError(f"need 0 <= valid_frac, test_frac and their sum < 1; got {valid_frac}, {test_frac}")


def quantile_cut_positions(n: int, valid_frac: float, test_frac: float) -> tuple[int | None, int | None]:
    """Positions, in the n sorted timestamps, of the valid and test folds' first timestamps (the
    1 − valid_frac − test_frac and 1 − test_frac quantiles); None means "after everything"."""
    _check_fractions(valid_frac, test_frac)

    def cut(frac_after: float) -> int | None:
        pos = int(round(n * (1.0 - frac_after)))
        return None if pos >= n else pos

    return cut(valid_frac + test_frac), cut(test_frac)


def temporal_split(interactions: pl.DataFrame, valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """Global time cuts at the (1 - valid_frac - test_frac) and (1 - test_frac) quantiles of ts."""
    _check_fractions(valid_frac, test_frac)
    frame = _check(interactions, "temporal_split")
    if frame.is_empty():
        raise ValueError("temporal_split: interactions frame is empty")
    ts_sorted = frame["ts"].sort()
    p1, p2 = quantile_cut_positions(ts_sorted.len(), valid_frac, test_frac)
    t1 = None if p1 is None else ts_sorted[p1]
    t2 = None if p2 is None else ts_sorted[p2]
    ts = pl.col("ts")
    in_train = ts < t1 if t1 is not None else pl.lit(True)
    in_test = ts >= t2 if t2 is not None else pl.lit(False)
    train = frame.filter(in_train)
    test = frame.filter(in_test)
    valid = frame.filter(~in_train & ~in_test)
    return temporal_split_of(train, valid, test, valid_frac, test_frac, t1, t2)


def temporal_split_of(train: pl.DataFrame, valid: pl.DataFrame, test: pl.DataFrame, valid_frac: float, test_frac: float, t1, t2) -> Split:
    """The temporal_quantile split of folds already assigned (by ``temporal_split`` or by
    sql/staging/split_quantile.sql on either engine) at the cuts ``t1``, ``t2`` (None: after everything)."""
    params = _describe(
        "temporal_quantile",
        train,
        valid,
        test,
        valid_frac=valid_frac,
        test_frac=test_frac,
        t_valid_start=None if t1 is None else str(t1),
        t_test_start=None if t2 is None else str(t2),
    )
    return Split(train, valid, test, params)


def leave_last_out_split(interactions: pl.DataFrame, min_interactions: int = 3) -> Split:
    """Per user: last interaction -> test, second to last -> valid; users below 3 stay in train."""
    frame = _check(interactions, "leave_last_out_split")
    # the canonical event order (ts, seq) breaks ts ties: the source's own order, never an id
    # (ordering same-second events by item id would make "the largest id" every user's target)
    ordered = frame.with_row_index("_row").sort(["user_id", "ts", "seq", "_row"])
    from_end = (pl.len().over("user_id") - 1 - pl.int_range(pl.len()).over("user_id")).alias("_from_end")
    eligible = pl.len().over("user_id") >= min_interactions
    ordered = ordered.with_columns(from_end, eligible.alias("_eligible"))
    test = ordered.filter(pl.col("_eligible") & (pl.col("_from_end") == 0))
    valid = ordered.filter(pl.col("_eligible") & (pl.col("_from_end") == 1))
    train = ordered.filter(~pl.col("_eligible") | (pl.col("_from_end") >= 2))
    # restore the input's row order inside each part
    parts = [p.sort("_row").drop(["_row", "_from_end", "_eligible"]) for p in (train, valid, test)]
    return leave_last_out_of(*parts, min_interactions=min_interactions)


def leave_last_out_of(train: pl.DataFrame, valid: pl.DataFrame, test: pl.DataFrame, min_interactions: int = 3) -> Split:
    """The leave-last-out split of folds already assigned (by ``leave_last_out_split`` or by
    sql/staging/split_leave_last_out.sql on either engine), with its params."""
    # a user kept whole in train is one below min_interactions: no test row (every eligible user has one)
    n_short = train.select("user_id").unique().join(test.select("user_id").unique(), on="user_id", how="anti").height
    params = _describe("leave_last_out", train, valid, test, min_interactions=min_interactions, n_users_kept_in_train=n_short)
    return Split(train, valid, test, params)


def parts_of(folded: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(train, valid, test) of a frame with a ``fold`` column, each in the frame's row order, without it."""
    return tuple(folded.filter(pl.col("fold") == name).drop("fold") for name in ("train", "valid", "test"))


def files_split(
    train: pl.DataFrame,
    valid: pl.DataFrame,
    test: pl.DataFrame,
    source: str | None = None,
    *,
    dataset: str | None = None,
    **extra,
) -> Split:
    """Wrap a given train / valid / test split after checking each against the schema.

    ``params["dataset"]`` is the split's own dataset label (e.g. the RecBole folder's name) when
    given; ``extra`` goes into params unchanged (e.g. per-file line counts). Under this protocol
    every target user is evaluated, users without history included (docs/evaluation.md)."""
    parts = [_check(f, f"files_split {name}") for f, name in ((train, "train"), (valid, "valid"), (test, "test"))]
    if parts[0].is_empty():
        raise ValueError("files_split: train is empty")
    if parts[2].is_empty():
        raise ValueError("files_split: test is empty")
    labels = {"dataset": dataset} if dataset else {}
    return Split(*parts, _describe("files", *parts, source=source, **labels, **extra))


def relevant(target: pl.DataFrame, positive: pl.Expr | None = None) -> pl.DataFrame:
    """Truth frame (user_id, item_id), deduplicated: target rows passing ``positive`` (default: all)."""
    rows = target if positive is None else target.filter(positive)
    return rows.select(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64)).unique().sort(["user_id", "item_id"])


def drop_cold(truth: pl.DataFrame, history: pl.DataFrame, users: bool = True, items: bool = False) -> pl.DataFrame:
    """Truth restricted to users (and optionally items) present in history."""
    if users:
        truth = truth.join(history.select("user_id").unique(), on="user_id", how="semi")
    if items:
        truth = truth.join(history.select("item_id").unique(), on="item_id", how="semi")
    return truth


def catalogue_as_of(items: pl.DataFrame, first_seen: pl.DataFrame, history: pl.DataFrame) -> pl.DataFrame:
    """The items a model fit on ``history`` may know: those seen by history's last event.

    ``first_seen``: item_id, first_seen (the item's first event in the whole log). Only items with
    ``first_seen <= as_of`` are kept, so a fold's catalogue depends on nothing after its history:
    neither items that first appear in its own target window or later, nor whether a catalogue item
    never rated by then is rated later (which would otherwise move it in or out of the fold)."""
    if history.is_empty():
        return items.head(0)
    as_of = history["ts"].max()
    known = first_seen.filter(pl.col("first_seen") <= as_of).select(pl.col("item_id").cast(items["item_id"].dtype))
    return items.join(known, on="item_id", how="semi")
