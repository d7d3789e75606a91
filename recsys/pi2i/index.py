"""PI2I stage 1, IBS: the trigger → target index with a relaxed truncation depth.

API::

    index = build_relaxed_index(history, depth=300, method="cooc", **itemcf_params)   # ItemIndex
    curve = hit_rate_vs_depth(index, history, target, depths=(10, 20, 50, 100, 200, 300, 500),
                              n_triggers=10, exclude_seen=True)
    # -> depth, hit_rate, recall, avg_pool_size, n_users
    channel = PI2IIndexChannel(depth=300).fit(history, items).recommend(user_ids, k)   # "pi2i_index"

The usual item-to-item index is cut at a uniform depth (tens) so that the union of a user's trigger
lists stays small enough to rank by the similarity score alone. IBS keeps hundreds per trigger:
the pool grows, and so does the chance that it holds the next item; stage 2 (PRS) ranks the
larger pool. ``hit_rate_vs_depth`` measures that trade: for each user with at least one target
item, the pool at depth d is the union of the first d targets of each of the user's last
``n_triggers`` distinct items (minus items already seen, when ``exclude_seen``); ``hit_rate`` is
the share of users whose pool holds at least one target item, ``recall`` the mean share of their
target items it holds, ``avg_pool_size`` the mean pool size. An ``index`` deeper than a requested
depth answers at its own depth (the row still says the requested depth).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.channels.base import IdIndex
from recsys.channels.itemcf import ItemCFChannel, ItemIndex, build_item_index, user_triggers


def build_relaxed_index(history: pl.DataFrame, depth: int = 300, method: str = "cooc", **params) -> ItemIndex:
    """The relaxed-truncation index: the item CF index kept ``depth`` deep (hundreds)."""
    return build_item_index(history, depth, method, **params)


def _user_item_csr(users: IdIndex, items: IdIndex, u_ids, i_ids) -> sp.csr_matrix:
    u = users.positions(u_ids)
    i = items.positions(i_ids)
    keep = (u >= 0) & (i >= 0)
    m = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (u[keep], i[keep])), shape=(len(users), len(items)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def hit_rate_vs_depth(
    index: ItemIndex,
    history: pl.DataFrame,
    target: pl.DataFrame,
    depths=(10, 20, 50, 100, 200, 300, 500),
    n_triggers: int = 10,
    exclude_seen: bool = True,
) -> pl.DataFrame:
    """Pool hit rate, recall and size against truncation depth (see module docstring)."""
    users = IdIndex.from_values(history["user_id"])
    items = index.items
    trig = user_triggers(history, users, items, n_triggers)
    trig_m = sp.csr_matrix((np.ones(len(trig.user_pos), np.float32), (trig.user_pos, trig.item_pos)), shape=(len(users), len(items)))
    truth = _user_item_csr(users, items, target["user_id"], target["item_id"])
    seen = _user_item_csr(users, items, history["user_id"], history["item_id"]) if exclude_seen else None
    eval_users = np.flatnonzero(np.diff(truth.indptr) > 0)
    truth = truth[eval_users]
    trig_m = trig_m[eval_users]
    rows = []
    for d in depths:
        pool = (trig_m @ index.to_csr(d, values="ones")).tocsr()
        pool.data[:] = 1.0
        if seen is not None:
            pool = (pool - pool.multiply(seen[eval_users])).tocsr()
            pool.eliminate_zeros()
        hits = np.asarray(pool.multiply(truth).sum(axis=1)).ravel()
        n_truth = np.diff(truth.indptr)
        rows.append(
            {
                "depth": int(d),
                "hit_rate": float(np.mean(hits > 0)) if len(eval_users) else float("nan"),
                "recall": float(np.mean(hits / n_truth)) if len(eval_users) else float("nan"),
                "avg_pool_size": float(np.mean(np.diff(pool.indptr))) if len(eval_users) else float("nan"),
                "n_users": int(len(eval_users)),
            }
        )
    return pl.DataFrame(
        rows, schema={"depth": pl.Int64, "hit_rate": pl.Float64, "recall": pl.Float64, "avg_pool_size": pl.Float64, "n_users": pl.Int64}
    )


class PI2IIndexChannel(ItemCFChannel):
    """ "pi2i_index": the relaxed lists ranked by co-occurrence score alone (PRS's no-model baseline)."""

    def __init__(self, depth: int = 300, n_triggers: int = 10, recency_decay: float = 0.8, aggregate: str = "sum", **index_params):
        super().__init__(
            depth=depth,
            method="cooc",
            n_triggers=n_triggers,
            recency_decay=recency_decay,
            aggregate=aggregate,
            name="pi2i_index",
            **index_params,
        )
