"""Item CF channels over an item-to-item index (recsys/channels/item_index.py).

API::

    channel = ItemCFChannel(depth=50, method="cooc" | "swing").fit(history, items=None, runtime=None)
    channel.recommend(user_ids, k=100, exclude_seen=True)   # user_id, item_id, score, rank

The user's last ``n_triggers`` distinct items are triggers with weight ``recency_decay ** r``; a
candidate's score is the sum (or max) over triggers of weight × index score; seen items excluded.
The index builders are re-exported here for callers that treat item CF as one module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.channels.base import IdIndex, recs_frame
from recsys.channels.item_index import (
    ItemIndex,
    build_cooc_index,
    build_item_index,
    build_swing_index,
    cooc_from_baskets,
    swing_user_weights,
    topk_csr,
    topk_sparse,
)
from recsys.schema import with_event_position

__all__ = [
    "ItemCFChannel",
    "ItemIndex",
    "UserTriggers",
    "build_cooc_index",
    "build_item_index",
    "build_swing_index",
    "cooc_from_baskets",
    "expand_lists",
    "reduce_pairs",
    "seen_keys",
    "swing_user_weights",
    "topk_csr",
    "topk_sparse",
    "user_triggers",
]


@dataclass
class UserTriggers:
    """Each user's last ``n`` distinct items (most recent first) with last-touch time."""

    users: IdIndex
    user_pos: np.ndarray  # int32 [m]
    item_pos: np.ndarray  # int32 [m]
    recency: np.ndarray  # int32 [m], 0 = most recent
    t_last: np.ndarray  # int64 [m], µs since epoch
    user_t_last: np.ndarray  # int64 [n_users], the user's latest event time


def user_triggers(history: pl.DataFrame, users: IdIndex, items: IdIndex, n_triggers: int) -> UserTriggers:
    ordered = with_event_position(history.select("user_id", "item_id", "ts", "seq"), "o")
    frame = ordered.select(
        pl.Series("u", users.positions(ordered["user_id"])),
        pl.Series("i", items.positions(ordered["item_id"])),
        pl.col("ts").dt.epoch("us").alias("t"),
        "o",
    ).filter((pl.col("u") >= 0) & (pl.col("i") >= 0))
    # recency 0 = the item of the user's latest event in the order (ts, seq)
    last = frame.group_by("u", "i").agg(pl.col("t").max(), pl.col("o").max())
    last = (
        last.with_columns((pl.col("o").rank("ordinal", descending=True).over("u") - 1).alias("recency"))
        .filter(pl.col("recency") < n_triggers)
        .sort("u", "recency")
    )
    user_t = np.zeros(len(users), np.int64)
    agg = frame.group_by("u").agg(pl.col("t").max())
    user_t[agg["u"].to_numpy()] = agg["t"].to_numpy()
    return UserTriggers(
        users,
        last["u"].to_numpy().astype(np.int32),
        last["i"].to_numpy().astype(np.int32),
        last["recency"].to_numpy().astype(np.int32),
        last["t"].to_numpy().astype(np.int64),
        user_t,
    )


def seen_keys(history: pl.DataFrame, users: IdIndex, items: IdIndex) -> np.ndarray:
    """Sorted int64 keys u * n_items + i of every (user, item) in ``history``."""
    u = users.positions(history["user_id"]).astype(np.int64)
    i = items.positions(history["item_id"]).astype(np.int64)
    keep = (u >= 0) & (i >= 0)
    return np.unique(u[keep] * len(items) + i[keep])


def expand_lists(index: ItemIndex, trig_row: np.ndarray, trig_item: np.ndarray, depth: int | None = None):
    """Flatten each trigger's list: (trigger entry, candidate position, 0-based rank) per slot."""
    d = index.depth if depth is None else min(depth, index.depth)
    tg = index.targets[trig_item, :d]
    keep = tg >= 0
    entry = np.repeat(np.arange(len(trig_row), dtype=np.int64), keep.sum(axis=1))
    return entry, tg[keep].astype(np.int32), np.nonzero(keep)[1].astype(np.int32)


def reduce_pairs(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_cols: int, how: str):
    """Collapse duplicate (row, col) entries by sum or max; returns unique rows, cols, vals."""
    keys = rows.astype(np.int64) * n_cols + cols
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], vals[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.empty(0, np.int64)
    red = (np.add if how == "sum" else np.maximum).reduceat(vals, starts) if len(keys) else vals
    uk = keys[starts] if len(keys) else keys
    return uk // n_cols, uk % n_cols, red


class ItemCFChannel:
    """Item CF over a uniform-depth co-occurrence or Swing index.

    A user's last ``n_triggers`` distinct items are triggers with recency weight
    ``recency_decay ** r`` (r = 0 for the most recent); a candidate's score is the sum (or max,
    ``aggregate="max"``) over triggers of recency weight × index score.
    """

    def __init__(
        self,
        depth: int = 50,
        method: str = "cooc",
        n_triggers: int = 20,
        recency_decay: float = 0.8,
        aggregate: str = "sum",
        name: str | None = None,
        **index_params,
    ):
        if aggregate not in ("sum", "max"):
            raise ValueError(f"aggregate must be sum|max, got {aggregate!r}")
        self.depth, self.method, self.n_triggers = depth, method, n_triggers
        self.recency_decay, self.aggregate = recency_decay, aggregate
        self.index_params = index_params
        self.name = name or ("swing" if method == "swing" else "itemcf")
        # who builds the index: build_item_index here, or a caller's equivalent (an engine's SQL,
        # resources/engine.py); called as build_item_index is, and must return the same index
        self.index_source = build_item_index

    def fit(self, history: pl.DataFrame, items: pl.DataFrame | None = None, runtime=None) -> ItemCFChannel:
        return self._fit(history, items, None)

    def fit_on_index(self, history: pl.DataFrame, index: ItemIndex, items: pl.DataFrame | None = None) -> ItemCFChannel:
        """``fit`` with an index the caller built on the same history and items, at this channel's
        depth or deeper (cut to ``depth`` here): one build shared with another reader of the index,
        e.g. pi2i_index's hit-rate curve, which needs it deeper."""
        return self._fit(history, items, index)

    def _fit(self, history: pl.DataFrame, items: pl.DataFrame | None, index: ItemIndex | None) -> ItemCFChannel:
        item_ids = history["item_id"] if items is None else pl.concat([history["item_id"], items["item_id"]])
        self.items_ = IdIndex.from_values(item_ids)
        self.users_ = IdIndex.from_values(history["user_id"])
        if index is None:
            index = self.index_source(history, self.depth, self.method, items=self.items_, **self.index_params)
        else:
            if not np.array_equal(index.items.ids, self.items_.ids):
                raise ValueError(f"{self.name}: the given index numbers other items than this history (and catalogue)")
            if index.depth < self.depth:
                raise ValueError(f"{self.name}: the given index is {index.depth} deep, the channel needs {self.depth}")
            if index.depth > self.depth:
                index = index.truncate(self.depth)
        self.index_ = index
        self.triggers_ = user_triggers(history, self.users_, self.items_, self.n_triggers)
        self.seen_ = seen_keys(history, self.users_, self.items_)
        return self

    def _index_key(self) -> str:
        return repr((self.depth, self.method, sorted(self.index_params.items())))

    def fit_settings(self, make_channel, settings: list[dict], history: pl.DataFrame, items=None, runtime=None):
        """(setting, fitted channel) per setting; settings that keep the index (depth, method, index
        parameters) and change only the triggers (n_triggers, recency_decay, aggregate) share one
        index build (the valid-fold search, recsys/channels/search.py). Each result equals
        ``make_channel(setting).fit(history, items)``."""
        key, index = None, None
        for setting in settings:
            channel = make_channel(setting)
            shared = index if channel._index_key() == key else None
            channel._fit(history, items, shared)
            key, index = channel._index_key(), channel.index_
            yield setting, channel

    def recommend(self, user_ids, k: int, exclude_seen: bool = True) -> pl.DataFrame:
        user_ids = np.asarray(user_ids.to_numpy() if isinstance(user_ids, pl.Series) else user_ids, np.int64)
        upos = self.users_.positions(user_ids)
        trig = self.triggers_
        # Row of each requested user in the output block; triggers of unknown users are dropped.
        row_of_user = np.full(len(self.users_), -1, np.int64)
        known = upos >= 0
        row_of_user[upos[known]] = np.flatnonzero(known)
        t_row = row_of_user[trig.user_pos]
        sel = t_row >= 0
        t_row, t_item, t_rec = t_row[sel], trig.item_pos[sel], trig.recency[sel]
        entry, cand, slot = expand_lists(self.index_, t_row, t_item)
        rw = np.power(self.recency_decay, t_rec).astype(np.float32)
        vals = rw[entry] * self.index_.scores[t_item[entry], slot]
        rows = t_row[entry]
        if exclude_seen:
            keys = upos[rows].astype(np.int64) * len(self.items_) + cand
            ok = ~np.isin(keys, self.seen_)
            rows, cand, vals = rows[ok], cand[ok], vals[ok]
        r, c, v = reduce_pairs(rows, cand, vals, len(self.items_), self.aggregate)
        idx, val, _ = topk_sparse(r, c, v.astype(np.float32), len(user_ids), k)
        return recs_frame(user_ids, idx, val, self.items_)
