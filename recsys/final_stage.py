"""The final-stage guard: the served list is never worse on held-out valid users than its best input.

API::

    blended = blend({"lgbm_ranker": recs, "sequence_ranker": recs}, k=100)   # RRF of the rankers
    name = channel_blend(lists, kinds, truth, users, k=100)        # adds "blend+<best channel>" to lists/kinds
    table = guard_table(valid_lists, kinds, truth, users, k=10, default="blend")   # one row per candidate, best first
    choice = choose_final(table)                                   # {"stage", "kind", "ndcg", "default", ...}
    describe_choice(table, choice)                                 # one line: why

Candidates (``kinds`` maps each name to its kind): every ranker whose promotion gate passed
(``ranker``), the blend of those rankers (``blend``: reciprocal-rank fusion, sum of 1/(60 + rank)
over the rankers' lists, ties by the first ranker's order), the blend of the rankers with the best
channel on these users (``blend+<channel>``, kind ``blend``: a ranker learns from few labels, the
channel from the whole history, and their fusion keeps what both rank high; ``channel_blend``), the
fused candidate pool (``pool``) and every single channel (``channel``). Each is scored by NDCG@10
(recsys.metrics, full valid truth) on the same users: the rankers' held-out valid users, each scored
by a model that did not see their labels (the early-stopping slice, or, under the rankers'
``oof_max_users``, every labelled user out of fold), so a ranker is not flattered by its own
training labels and the channels are measured on exactly the users the rankers are.

The choice: the ``default`` candidate (the asset passes the rankers' blend, or the one passed ranker)
unless the candidate with the best NDCG@10 is ahead of it by more than one standard error of the
per-user paired difference (``DEFAULT_MARGIN_SE``); without a default, the best (an exact tie goes
to the simpler candidate: channel, pool, blend, ranker, in that order). The best of ~15 noisy means
on few users is partly luck: on ML-100K's valid folds, choosing on one half of the users and scoring
on the other, plain argmax delivered 0.2006 (temporal, 68 users) and 0.1498 (leave-last-out, 815),
this rule 0.2130 and 0.1535; on the files split (941 users) both 0.270 (bench/results_guard_rule.md). ``margin`` in the table is the paired
mean difference of each candidate against the best single channel on these users, with a bootstrap
95% interval (recsys.metrics.stats.paired_test); ``margin_vs_default`` and ``se_vs_default`` the
paired difference against the default and its standard error.
"""

from __future__ import annotations

import polars as pl

from recsys.metrics import evaluate
from recsys.metrics.stats import paired_test
from recsys.schema import RECOMMENDATION_SCHEMA

RRF_K = 60.0
KINDS = ("channel", "pool", "blend", "ranker")  # tie order: the simpler candidate wins a tie
GUARD_K = 10
DEFAULT_MARGIN_SE = 1.0  # the best replaces the default when ahead by more than this many standard errors


def blend(lists: dict[str, pl.DataFrame], k: int) -> pl.DataFrame:
    """Reciprocal-rank fusion of recommendation frames, top ``k`` per user."""
    if not lists:
        raise ValueError("blend needs at least one ranked list")
    names = list(lists)
    long = pl.concat(
        [recs.select("user_id", "item_id", "rank").with_columns(pl.lit(n).alias("_by")) for n, recs in lists.items()], how="vertical"
    )
    first = lists[names[0]].select("user_id", "item_id", pl.col("rank").alias("_first"))
    fused = (
        long.group_by("user_id", "item_id")
        .agg((1.0 / (RRF_K + pl.col("rank"))).sum().alias("score"))
        .join(first, on=["user_id", "item_id"], how="left")
        .sort(["user_id", "score", "_first", "item_id"], descending=[False, True, False, False], nulls_last=True)
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("user_id").alias("rank"))
        .filter(pl.col("rank") <= k)
    )
    return fused.select([pl.col(c).cast(t) for c, t in RECOMMENDATION_SCHEMA.items()])


def ranked_users(lists: dict[str, pl.DataFrame], rankers: list[str]) -> pl.Series:
    """The users every one of ``rankers`` has a list for (the guard's held-out users), sorted."""
    users = None
    for name in rankers:
        mine = lists[name]["user_id"].unique()
        users = mine if users is None else users.filter(users.is_in(mine.implode()))
    if users is None:
        raise ValueError("ranked_users needs at least one ranker")
    return users.sort()


def _per_user(recs: pl.DataFrame, truth: pl.DataFrame, users: pl.Series, k: int) -> pl.DataFrame:
    mine = recs.filter(pl.col("user_id").is_in(users.implode()))
    return evaluate(mine, truth.filter(pl.col("user_id").is_in(users.implode())), ks=(k,), metrics=("ndcg",), per_user=True)


def _ndcg(recs: pl.DataFrame, truth: pl.DataFrame, users: pl.Series, k: int) -> float:
    rows = _per_user(recs, truth, users, k)
    return float(rows["value"].mean()) if rows.height else 0.0


def _first_best(scores: dict[str, float]) -> str | None:
    """The name with the highest score, ties to the earliest in ``scores``' order; None when empty."""
    names = list(scores)
    return max(names, key=lambda n: (scores[n], -names.index(n))) if names else None


def best_channel(lists: dict[str, pl.DataFrame], kinds: dict[str, str], truth: pl.DataFrame, users: pl.Series, k: int = GUARD_K):
    """The channel with the best NDCG@k on ``users`` (ties: the earlier one in ``lists``), None without channels."""
    users = users.unique().sort()
    return _first_best({name: _ndcg(recs, truth, users, k) for name, recs in lists.items() if kinds[name] == "channel"})


def channel_blend(
    lists: dict[str, pl.DataFrame], kinds: dict[str, str], truth: pl.DataFrame, users: pl.Series, k: int, guard_k: int = GUARD_K
) -> str | None:
    """Add ``blend+<channel>`` to ``lists`` / ``kinds`` (in place): the reciprocal-rank fusion of every ranker
    with the best channel on ``users`` (the rankers first, so ties follow the first ranker). Returns its name,
    or None (nothing added) without a ranker or a channel. ``with_channel_blend`` builds the same list on
    another fold from the returned name."""
    rankers = [n for n in lists if kinds[n] == "ranker"]
    channel = best_channel(lists, kinds, truth, users, guard_k) if rankers else None
    if channel is None:
        return None
    name = f"blend+{channel}"
    with_channel_blend(lists, kinds, name, k)
    return name


def with_channel_blend(lists: dict[str, pl.DataFrame], kinds: dict[str, str], name: str, k: int) -> None:
    """Add the list ``channel_blend`` named ``name`` (``blend+<channel>``) to another fold's ``lists`` / ``kinds``."""
    rankers = [n for n in lists if kinds[n] == "ranker"]
    channel = name.removeprefix("blend+")
    lists[name], kinds[name] = blend({**{n: lists[n] for n in rankers}, channel: lists[channel]}, k), "blend"


def guard_table(
    valid_lists: dict[str, pl.DataFrame],
    kinds: dict[str, str],
    truth: pl.DataFrame,
    users: pl.Series,
    k: int = GUARD_K,
    n_boot: int = 1000,
    seed: int = 0,
    default: str | None = None,
) -> pl.DataFrame:
    """stage, kind, ndcg, margin_vs_best_channel, margin_low, margin_high, n_users, best_channel, default,
    margin_vs_default, se_vs_default (best first)."""
    unknown = {n: kd for n, kd in kinds.items() if kd not in KINDS}
    if unknown:
        raise ValueError(f"unknown candidate kinds {unknown}; expected one of {KINDS}")
    if default is not None and default not in valid_lists:
        raise ValueError(f"default candidate {default!r} is not among the candidates {sorted(valid_lists)}")
    users = users.unique().sort()
    per_user = {name: _per_user(recs, truth, users, k) for name, recs in valid_lists.items()}
    ndcg = {name: float(rows["value"].mean()) if rows.height else 0.0 for name, rows in per_user.items()}
    channels = [n for n in valid_lists if kinds[n] == "channel"]
    best_channel = _first_best({n: ndcg[n] for n in channels})
    rows = []
    for name in valid_lists:
        low = high = margin = None
        if best_channel is not None and per_user[name].height:
            paired = paired_test(per_user[name], per_user[best_channel], n_boot=n_boot, seed=seed)
            margin, low, high = (float(paired[c][0]) for c in ("mean_diff", "ci_low", "ci_high"))
        vs_default, se = _paired_se(per_user[name], per_user[default]) if default is not None else (None, None)
        rows.append(
            {
                "stage": name,
                "kind": kinds[name],
                "ndcg": ndcg[name],
                "margin_vs_best_channel": margin,
                "margin_low": low,
                "margin_high": high,
                "n_users": users.len(),
                "best_channel": best_channel,
                "default": default,
                "margin_vs_default": vs_default,
                "se_vs_default": se,
            }
        )
    floats = ("margin_vs_best_channel", "margin_low", "margin_high", "margin_vs_default", "se_vs_default")
    table = pl.DataFrame(rows, schema_overrides={**dict.fromkeys(floats, pl.Float64), "best_channel": pl.String, "default": pl.String})
    order = {kind: i for i, kind in enumerate(KINDS)}
    return (
        table.with_columns(pl.col("kind").replace_strict(order, return_dtype=pl.Int32).alias("_tie"))
        .sort(["ndcg", "_tie", "stage"], descending=[True, False, False])
        .drop("_tie")
    )


def _paired_se(a: pl.DataFrame, b: pl.DataFrame) -> tuple[float | None, float | None]:
    """Mean and standard error of the per-user difference a − b (users of both; None without two users)."""
    d = a.select("user_id", "value").join(b.select("user_id", pl.col("value").alias("b")), on="user_id")
    diff = (d["value"] - d["b"]).to_numpy()
    if len(diff) < 2:
        return None, None
    return float(diff.mean()), float(diff.std(ddof=1) / len(diff) ** 0.5)


def choose_final(table: pl.DataFrame, margin_se: float = DEFAULT_MARGIN_SE) -> dict:
    """The final stage from ``guard_table``: its first row, unless the table has a default and that row is
    not ahead of it by more than ``margin_se`` standard errors (then the default); with what it beat."""
    if table.is_empty():
        raise ValueError("no candidate for the final stage")
    best = table.row(0, named=True)
    default = best.get("default")
    if default is not None and best["stage"] != default:
        ahead = best["se_vs_default"] is not None and best["margin_vs_default"] > margin_se * best["se_vs_default"]
        if not ahead:
            best = table.filter(pl.col("stage") == default).row(0, named=True)
    channel = table.filter(pl.col("stage") == best["best_channel"]).row(0, named=True) if best["best_channel"] else None
    return {
        "stage": best["stage"],
        "kind": best["kind"],
        "ndcg": best["ndcg"],
        "best_channel": best["best_channel"],
        "best_channel_ndcg": channel["ndcg"] if channel else None,
        "margin": best["margin_vs_best_channel"],
        "margin_low": best["margin_low"],
        "margin_high": best["margin_high"],
        "n_users": best["n_users"],
        "default": default,
        "margin_vs_default": best.get("margin_vs_default"),
    }


def describe_choice(table: pl.DataFrame, choice: dict) -> str:
    """One line on why ``choice`` (from ``choose_final(table)``) was made."""
    default, top = choice["default"], table.row(0, named=True)
    if default is None:
        return "the best candidate (no default: no ranker passed)"
    if choice["stage"] != default:
        return f"ahead of the default {default} by {choice['margin_vs_default']:+.4f} (more than 1 SE, {top['se_vs_default']:.4f})"
    if top["stage"] == default:
        return f"the default {default}, also the best"
    if top["se_vs_default"] is None:
        return f"the default {default} (best {top['stage']}: too few users for a standard error)"
    return f"the default {default} (best {top['stage']} ahead by {top['margin_vs_default']:+.4f}, not more than 1 SE, {top['se_vs_default']:.4f})"
