"""Hyper-parameter search of a candidate channel on the valid fold only (never the test fold).

API::

    best, table = search_on_valid(make_channel, {"l2": [50, 200, 500, 1000]}, history, target, users, k=10)
    result = run_search(make_channel, grid, history, target, users, k=10, items=None, runtime=None)
    result.best_params, result.table, result.best_channel, result.searched
    expand_grid({"factors": [32, 64], "regularization": [0.01, 0.05]})   # 4 settings, first key outermost
    fit_on, info = search_history(history, users, max_events=1_000_000, seed=0)   # the search's event budget

``history`` is the valid fold's history (train) and ``target`` the valid fold's target events; the
caller never hands the test fold to the search. Every setting of the grid (the cartesian product of
its value lists, in the order given) is fitted on ``history`` with ``make_channel(setting)``, asked for
the top ``k`` of each of ``users`` over the full catalogue with seen items excluded (as the channel
does when it writes candidates) and scored by NDCG@k (recsys.metrics.evaluate, binary gains) against
every target interaction of ``users``. The best setting wins; a tie
goes to the setting that comes first in the grid (scores are rounded to ``DECIMALS`` places first,
so float noise in the mean over users, e.g. from another user order, never decides).

The table also gives each score's standard error over users (``se``) and the paired standard error
of its difference to the chosen setting (``paired_se_vs_chosen``): on a small valid fold most
differences are noise, and the table says so.

A grid whose every list holds one value is no search: nothing is fitted, ``searched`` is False and
the table is empty.

Shared work across settings: when the channel built for the first setting has a
``fit_settings(make_channel, settings, history, items=None, runtime=None)`` method, the search uses it
(an iterator of (setting, fitted channel)); EASE computes its Gram matrix once for every λ that way.
Otherwise each setting is a fresh ``make_channel(setting).fit(history, items, runtime)``. Only the
best fitted channel is kept, so the caller can reuse it for the valid fold's candidates.

The search's event budget (``search_history``). A grid of n settings costs n fits of the train
history, so on a large log the search, not the one fit that serves, is what grows (ALS: 9 fits).
Past ``max_events`` train events the settings are fitted on the history of a seeded sample of whole
users instead: every user the search scores (their whole history: a channel only scores users it
was fitted on), then the other users in a seeded random order of their first appearance (so
relabelling ids never changes who) while the running event total stays within the budget. The
setting chosen there is refit once on the whole train history for the valid candidates. Within the
budget the history is returned as it is and nothing changes. The scored users are always kept whole,
so the sample is never smaller than their histories (keep ``max_search_users`` × events per user
well under the budget).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from recsys.metrics.accuracy import evaluate
from recsys.split import relevant

DECIMALS = 12  # scores are compared after rounding to this many places; equal ones: the first setting wins


@dataclass
class SearchResult:
    best_params: dict[str, Any]
    table: pl.DataFrame  # one row per setting: its params, valid_ndcg@k, seconds, se, paired_se_vs_chosen, chosen
    best_channel: Any | None  # the best setting's channel fitted on ``history`` (None when not searched)
    searched: bool
    metric: str = "valid_ndcg@10"
    n_users: int = 0  # valid-fold users scored

    def rows(self) -> list[dict[str, Any]]:
        """The table as JSON-able rows (for metadata and the registry)."""
        return [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()} for row in self.table.iter_rows(named=True)]


@dataclass(frozen=True)
class HistorySample:
    """What ``search_history`` kept: n_events of the history's total events, from n_users of its users."""

    n_events: int
    total_events: int
    n_users: int
    total_users: int
    budget: int
    seed: int

    @property
    def sampled(self) -> bool:
        return self.n_events < self.total_events

    def describe(self) -> str:
        if not self.sampled:
            return f"all {self.total_events:,} train events"
        return (
            f"{self.n_events:,} of {self.total_events:,} train events ({self.n_users:,} of {self.total_users:,} users: "
            f"the scored users, then a seeded uniform sample of whole users, seed {self.seed})"
        )


def search_history(history: pl.DataFrame, users, max_events: int, seed: int = 0) -> tuple[pl.DataFrame, HistorySample]:
    """(the history the search fits on, what was kept): ``history`` itself within ``max_events`` (0 = no
    budget), else the whole histories of ``users`` (the users the search scores) and then of other users,
    drawn in a seeded random order over their first appearance in ``history``'s event order, while the
    total stays within ``max_events``. Rows keep their order in ``history``."""
    from recsys.metrics.sampling import sample_within_size, users_in_event_order

    total, total_users = history.height, history["user_id"].n_unique()
    if not max_events or total <= max_events:
        return history, HistorySample(total, total, total_users, total_users, max_events, seed)
    if max_events < 0:
        raise ValueError(f"max_events must be >= 0 (0 = no budget), got {max_events}")
    sizes = history.group_by("user_id").agg(pl.len().alias("n"))
    kept = sample_within_size(users_in_event_order(history), sizes, max_events, seed, first=pl.Series("user_id", users))
    sample = history.filter(pl.col("user_id").is_in(kept.implode()))
    return sample, HistorySample(sample.height, total, kept.len(), total_users, max_events, seed)


def expand_grid(grid: Mapping[str, Sequence]) -> list[dict[str, Any]]:
    """Cartesian product of ``grid``'s value lists as settings, first key outermost, values in order."""
    keys = list(grid)
    for key in keys:
        if len(grid[key]) == 0:
            raise ValueError(f"grid {key!r} is empty; give at least one value")
    return [dict(zip(keys, values)) for values in itertools.product(*(list(grid[k]) for k in keys))]


def per_user_ndcg(recs: pl.DataFrame, target: pl.DataFrame, users, k: int = 10) -> np.ndarray:
    """Per-user NDCG@k of ``recs`` for ``users`` with target events (sorted by user id), binary gains
    against every target interaction of theirs; a user without recommendations scores 0."""
    users_frame = pl.DataFrame({"user_id": pl.Series(users, dtype=pl.Int64)})
    truth = relevant(target).join(users_frame, on="user_id", how="semi")
    if truth.is_empty():
        return np.empty(0)
    rows = evaluate(recs, truth, ks=[k], metrics=["ndcg"], per_user=True)
    return rows.sort("user_id")["value"].to_numpy()


def valid_ndcg(recs: pl.DataFrame, target: pl.DataFrame, users, k: int = 10) -> float:
    """Mean NDCG@k over ``users`` with target events (``per_user_ndcg``); NaN when none has one."""
    values = per_user_ndcg(recs, target, users, k)
    return float(values.mean()) if len(values) else float("nan")


def fit_each(
    make_channel: Callable[[dict], Any], settings: list[dict], history: pl.DataFrame, items=None, runtime=None
) -> Iterator[tuple[dict, Any]]:
    """One fresh fit per setting."""
    for setting in settings:
        yield setting, make_channel(setting).fit(history, items=items, runtime=runtime)


def pick_best(scores: Sequence[float]) -> int:
    """Index of the best score (NaN never wins); ties and NaN-only lists go to the first."""
    best = 0
    for i, s in enumerate(scores):
        if s == s and (scores[best] != scores[best] or s > scores[best]):
            best = i
    return best


def run_search(
    make_channel: Callable[[dict], Any],
    grid: Mapping[str, Sequence],
    history: pl.DataFrame,
    target: pl.DataFrame,
    users,
    k: int = 10,
    *,
    items: pl.DataFrame | None = None,
    runtime=None,
    log: Callable[[str], None] | None = None,
) -> SearchResult:
    """Fit every setting of ``grid`` on ``history``, score NDCG@k on ``users``' ``target`` events, keep the best."""
    settings = expand_grid(grid)
    metric = f"valid_ndcg@{k}"
    if len(settings) == 1:
        return SearchResult(settings[0], pl.DataFrame(), None, searched=False, metric=metric, n_users=len(users))
    probe = make_channel(settings[0])
    fits = getattr(probe, "fit_settings", None)
    stream = (
        fits(make_channel, settings, history, items=items, runtime=runtime)
        if fits
        else fit_each(make_channel, settings, history, items, runtime)
    )
    rows, per_user, best, best_score = [], [], None, None
    started = time.monotonic()
    for setting, channel in stream:
        recs = channel.recommend(users, k=k, exclude_seen=True)
        values = per_user_ndcg(recs, target, users, k)
        per_user.append(values)
        score = round(float(values.mean()), DECIMALS) if len(values) else float("nan")
        seconds = round(time.monotonic() - started, 2)
        rows.append({**setting, metric: score, "seconds": seconds})
        if log is not None:
            log(f"search {setting}: {metric}={score:.5f} ({seconds}s)")
        if best is None or pick_best([best_score, score]) == 1:
            best, best_score = channel, score
        del channel
        started = time.monotonic()
    chosen = pick_best([r[metric] for r in rows])
    n = len(per_user[chosen])
    se = [float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan") for v in per_user]
    # the paired standard error of (this setting − the chosen one) over the same users: how far apart
    # two settings are in units of noise (the valid fold is often small)
    paired = [float((v - per_user[chosen]).std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan") for v in per_user]
    table = pl.DataFrame(rows).with_columns(
        pl.Series("se", se), pl.Series("paired_se_vs_chosen", paired), pl.Series("chosen", [i == chosen for i in range(len(rows))])
    )
    return SearchResult(settings[chosen], table, best, searched=True, metric=metric, n_users=len(users))


def search_on_valid(
    make_channel: Callable[[dict], Any],
    grid: Mapping[str, Sequence],
    history: pl.DataFrame,
    target: pl.DataFrame,
    users,
    k: int = 10,
    **kwargs,
) -> tuple[dict[str, Any], pl.DataFrame]:
    """(best setting, table of setting → valid NDCG@k); see ``run_search``."""
    result = run_search(make_channel, grid, history, target, users, k, **kwargs)
    return result.best_params, result.table
