"""Beyond-accuracy metrics of top-K lists: coverage, novelty, intra-list diversity, popularity.

API::

    items_pop = item_popularity(history)     # item_id, n_interactions, n_users, pop_share
    catalog_coverage(recs, n_items, k)       # float
    novelty(recs, items_pop, k)              # float  (per_user=True -> user_id, value)
    average_popularity(recs, items_pop, k)   # float  (per_user=True -> user_id, value)
    intra_list_diversity(recs, item_features, k, column="category_id")   # float (or per user)
    beyond_accuracy(recs, items_pop, n_items, ks=(10, 20), item_features=None, column=None)
      -> metric, k, value, n_users  (the long format of recsys.metrics.evaluate)

Definitions (top-K of each list, K cut by rank; means are over lists, i.e. users with recs):
- catalog_coverage@K: |∪_u top-K(u)| / n_items (n_items = catalogue size, recommended or not).
- novelty@K: mean over lists of mean −log2 pop_share(i), pop_share(i) = share of history users
  who interacted with i (Zhou et al. 2010 self-information). An item absent from history counts
  as seen by one user, so its novelty is the largest finite value, log2(#history users).
- arp@K (average recommended popularity, Abdollahpouri et al. 2019): mean over lists of the mean
  number of distinct history users of the list's items (0 for items absent from history).
- ild@K (intra-list diversity): mean over lists of the mean over item pairs of a distance:
  * vector features (a List/Array float column): distance = 1 − cosine(v_i, v_j), computed as
    1 − (‖Σv̂‖² − Σ‖v̂‖²) / (L(L−1)) over unit vectors v̂, O(L·d) per list instead of O(L²·d);
  * a categorical column: distance = 1 if the categories differ, so ild = 1 − share of same-category
    pairs = 1 − Σ_c n_c(n_c−1) / (L(L−1)); a missing category differs from every other.
  Items without features are left out of their list; lists with fewer than 2 items are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.metrics.accuracy import ranked_positions


def item_popularity(history: pl.DataFrame) -> pl.DataFrame:
    """item_id, n_interactions, n_users (distinct), pop_share = n_users / #distinct history users."""
    n_hist_users = history["user_id"].n_unique()
    return (
        history.group_by("item_id")
        .agg(
            pl.len().cast(pl.Int64).alias("n_interactions"),
            pl.col("user_id").n_unique().cast(pl.Int64).alias("n_users"),
        )
        .with_columns((pl.col("n_users") / n_hist_users).alias("pop_share"))
        .sort("item_id")
    )


def catalog_coverage(recs: pl.DataFrame, n_items: int, k: int) -> float:
    if n_items <= 0:
        raise ValueError(f"n_items must be positive, got {n_items}")
    return _coverage(ranked_positions(recs, k), n_items)


def _coverage(positions: pl.DataFrame, n_items: int) -> float:
    return positions["item_id"].n_unique() / n_items


def _per_list_mean(values: pl.DataFrame, per_user: bool) -> pl.DataFrame | float:
    per_list = values.group_by("user_id").agg(pl.col("value").mean()).sort("user_id")
    if per_user:
        return per_list
    return float(per_list["value"].mean()) if per_list.height else float("nan")


def novelty(recs: pl.DataFrame, items_pop: pl.DataFrame, k: int, per_user: bool = False):
    return _novelty(ranked_positions(recs, k), items_pop, per_user)


def _novelty(positions: pl.DataFrame, items_pop: pl.DataFrame, per_user: bool):
    # pop_share / n_users equals 1 / #history users on every row: the share of an item seen once
    floor_share = float((items_pop["pop_share"] / items_pop["n_users"]).max())
    values = positions.join(items_pop.select("item_id", "pop_share"), on="item_id", how="left").select(
        "user_id", (-pl.col("pop_share").fill_null(floor_share).log(2)).alias("value")
    )
    return _per_list_mean(values, per_user)


def average_popularity(recs: pl.DataFrame, items_pop: pl.DataFrame, k: int, per_user: bool = False):
    return _average_popularity(ranked_positions(recs, k), items_pop, per_user)


def _average_popularity(positions: pl.DataFrame, items_pop: pl.DataFrame, per_user: bool):
    values = positions.join(items_pop.select("item_id", "n_users"), on="item_id", how="left").select(
        "user_id", pl.col("n_users").fill_null(0).cast(pl.Float64).alias("value")
    )
    return _per_list_mean(values, per_user)


def _ild_categorical(lists: pl.DataFrame, column: str) -> pl.DataFrame:
    length = lists.group_by("user_id").agg(pl.len().cast(pl.Float64).alias("L"))
    same = (
        lists.filter(pl.col(column).is_not_null())
        .group_by("user_id", column)
        .agg(pl.len().cast(pl.Float64).alias("n_c"))
        .group_by("user_id")
        .agg((pl.col("n_c") * (pl.col("n_c") - 1)).sum().alias("same_pairs"))
    )
    return (
        length.join(same, on="user_id", how="left")
        .filter(pl.col("L") >= 2)
        .select("user_id", (1.0 - pl.col("same_pairs").fill_null(0.0) / (pl.col("L") * (pl.col("L") - 1))).alias("value"))
    )


def _ild_vectors(lists: pl.DataFrame, item_features: pl.DataFrame, column: str) -> pl.DataFrame:
    feats = item_features.select("item_id", column).filter(pl.col(column).is_not_null()).with_row_index("_row")
    vectors = feats[column]
    if isinstance(vectors.dtype, pl.List):
        # equal-length lists only: a ragged feature column is a data error and fails here
        vectors = vectors.list.to_array(int(vectors.list.len().max()))
    matrix = vectors.to_numpy().astype(np.float64).reshape(feats.height, -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    rows = lists.join(feats.select("item_id", "_row"), on="item_id", how="inner")
    users, user_pos = np.unique(rows["user_id"].to_numpy(), return_inverse=True)
    item_rows = rows["_row"].to_numpy().astype(np.int64)
    # user x item incidence times unit vectors = per-list vector sums, one sparse product for all lists
    incidence = sp.csr_matrix((np.ones(len(item_rows)), (user_pos, item_rows)), shape=(len(users), unit.shape[0]))
    sums = incidence @ unit
    sq_norm_sum = incidence @ np.square(np.linalg.norm(unit, axis=1))
    length = np.asarray(incidence.sum(axis=1)).ravel()
    keep = length >= 2
    mean_cos = (np.square(sums).sum(axis=1)[keep] - sq_norm_sum[keep]) / (length[keep] * (length[keep] - 1))
    return pl.DataFrame({"user_id": users[keep].astype(np.int64), "value": 1.0 - mean_cos})


def intra_list_diversity(
    recs: pl.DataFrame,
    item_features: pl.DataFrame,
    k: int,
    column: str = "category_id",
    per_user: bool = False,
):
    """Mean pairwise distance inside each top-K list; vector column -> 1 − cosine, else category."""
    return _intra_list_diversity(ranked_positions(recs, k), item_features, column, per_user)


def _intra_list_diversity(positions: pl.DataFrame, item_features: pl.DataFrame, column: str, per_user: bool):
    if column not in item_features.columns:
        raise ValueError(f"item_features lacks column {column!r}; has {item_features.columns}")
    lists = positions.select("user_id", "item_id")
    dtype = item_features.schema[column]
    if isinstance(dtype, (pl.List, pl.Array)):
        values = _ild_vectors(lists, item_features, column)
    else:
        values = _ild_categorical(lists.join(item_features.select("item_id", column), on="item_id", how="inner"), column)
    values = values.sort("user_id")
    if per_user:
        return values
    return float(values["value"].mean()) if values.height else float("nan")


def beyond_accuracy(
    recs: pl.DataFrame,
    items_pop: pl.DataFrame,
    n_items: int,
    ks: Sequence[int] = (10, 20),
    item_features: pl.DataFrame | None = None,
    column: str | None = None,
) -> pl.DataFrame:
    """Long rows (metric, k, value, n_users) for coverage, novelty, arp and (with features) ild."""
    ks = sorted(set(ks))
    positions = ranked_positions(recs, ks[-1])
    n_lists = positions["user_id"].n_unique()
    rows = []
    for k in ks:
        top = positions.filter(pl.col("pos") <= k)
        rows.append(("coverage", k, _coverage(top, n_items), n_lists))
        rows.append(("novelty", k, _novelty(top, items_pop, per_user=False), n_lists))
        rows.append(("arp", k, _average_popularity(top, items_pop, per_user=False), n_lists))
        if item_features is not None:
            ild = _intra_list_diversity(top, item_features, column or "category_id", per_user=True)
            rows.append(("ild", k, float(ild["value"].mean()) if ild.height else float("nan"), ild.height))
    schema = {"metric": pl.Utf8, "k": pl.Int32, "value": pl.Float64, "n_users": pl.Int64}
    return pl.DataFrame(rows, schema=schema, orient="row")
