"""PRS inputs: event logs, behaviour sequences, item categories, user codes, trigger–target crosses.

API::

    log = event_log(history, users, items)                 # EventLog: per-user chronological items
    trig, pos = triggers_at(log, user_pos, end, n_triggers)   # the serving triggers before ``end``
    seq = sequences(log, user_pos, end, seq_len)          # int32 [N, L], item position + 1, 0 = pad
    cats = item_categories(items, items_frame)             # int32 [n_items], 0 = unknown, 1.. categories
    codes, cards = encode_user_features(users, users_frame, columns)   # int32 [n_users, F], list[int]
    swing_at = swing_at_slots(cooc, swing)                  # float32 [n_items, D], -1 = not in Swing
    x = cross_features(cooc, swing_at, cats, trig, tgt, slot, gap_us, recency, n_triggers, loo=None)

Cross features (CROSS_FEATURES order): co-occurrence score, log1p raw co-occurrence count, rank of
the target in the trigger's relaxed list as a fraction of the depth, 1/(1 + rank), log1p Swing
score, whether the pair is in the Swing list, same category, log1p of the hours between the
trigger's last touch and the reference time, the trigger's recency rank / n_triggers, and the log
co-occurrence score log(score + 1e-4).

One definition of the inputs for training and serving: a query is (user, end), ``end`` a global
log position (exclusive). Serving: end = the end of the user's log. Training: end = the target
event's position. The triggers are the user's last ``n_triggers`` distinct items before ``end``
(``triggers_at``), the reference time is the user's latest event before ``end`` (log.t[end - 1]),
the sequence is the ``seq_len`` events before ``end``. At training the co-occurrence and Swing
features of a pair come without the user's own contribution (recsys.pi2i.loo).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.channels.base import IdIndex
from recsys.channels.itemcf import ItemIndex
from recsys.schema import with_event_position

LOG_SCORE_EPS = 1e-4
CROSS_FEATURES: tuple[str, ...] = (
    "cooc_score",
    "log_cooc_count",
    "cooc_rank_frac",
    "inv_cooc_rank",
    "log_swing",
    "in_swing",
    "same_category",
    "log_gap_hours",
    "trigger_recency_frac",
    "log_cooc_score",
)


@dataclass
class EventLog:
    """Chronological item positions per user (CSR-like), consecutive repeats of one item collapsed.

    A run of one item keeps its last event (its time is the run's last touch)."""

    users: IdIndex
    items: IdIndex
    indptr: np.ndarray  # int64 [n_users + 1]
    item_pos: np.ndarray  # int32 [n_events]
    t: np.ndarray  # int64 [n_events], µs since epoch

    def user_of(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.users), dtype=np.int32), np.diff(self.indptr))

    def same_item_links(self) -> tuple[np.ndarray, np.ndarray]:
        """(previous, next) position of the same (user, item) for every position; -1 / len when none."""
        n = len(self.item_pos)
        key = self.user_of().astype(np.int64) * len(self.items) + self.item_pos
        order = np.argsort(key, kind="stable")  # positions ascending within a key
        same = key[order][1:] == key[order][:-1]
        prev = np.full(n, -1, np.int64)
        nxt = np.full(n, n, np.int64)
        prev[order[1:][same]] = order[:-1][same]
        nxt[order[:-1][same]] = order[1:][same]
        return prev, nxt


def event_log(history: pl.DataFrame, users: IdIndex, items: IdIndex) -> EventLog:
    ordered = with_event_position(history.select("user_id", "item_id", "ts", "seq"), "o")
    frame = (
        ordered.select(
            pl.Series("u", users.positions(ordered["user_id"])),
            pl.Series("i", items.positions(ordered["item_id"])),
            pl.col("ts").dt.epoch("us").alias("t"),
            "o",
        )
        .filter((pl.col("u") >= 0) & (pl.col("i") >= 0))
        .sort("u", "o")  # each user's events in the canonical order (ts, seq)
    )
    # pv → cart → buy of one item is one step of the walk, not a self-transition. The run keeps its
    # LAST event, so ``t`` is the item's last touch in the run (serving's trigger time is the last touch).
    repeat = (pl.col("u") == pl.col("u").shift(-1)) & (pl.col("i") == pl.col("i").shift(-1))
    frame = frame.filter(~repeat.fill_null(False))
    u = frame["u"].to_numpy()
    indptr = np.zeros(len(users) + 1, np.int64)
    np.cumsum(np.bincount(u, minlength=len(users)), out=indptr[1:])
    return EventLog(users, items, indptr, frame["i"].to_numpy().astype(np.int32), frame["t"].to_numpy().astype(np.int64))


def sequences(log: EventLog, user_pos: np.ndarray, end: np.ndarray, seq_len: int) -> np.ndarray:
    """The ``seq_len`` events of ``user_pos`` before global position ``end`` (exclusive).

    Left-padded: the most recent item sits in the last column; values are item position + 1.
    """
    end = np.asarray(end, np.int64)
    start = log.indptr[np.asarray(user_pos, np.int64)]
    pos = end[:, None] - seq_len + np.arange(seq_len)[None, :]
    ok = pos >= start[:, None]
    vals = np.where(ok, log.item_pos[np.clip(pos, 0, max(len(log.item_pos) - 1, 0))] + 1, 0)
    return vals.astype(np.int32)


def triggers_at(log: EventLog, user_pos, end, n_triggers: int, next_same: np.ndarray | None = None):
    """The serving triggers of ``user_pos`` at global log position ``end`` (exclusive).

    Triggers are the user's last ``n_triggers`` DISTINCT items before ``end``, most recent first
    (column r = recency rank r), each at the position of its last occurrence before ``end``.
    Returns (item int32 [Q, n], pos int64 [Q, n]), -1 where the user has fewer items. The
    reference time of the query is ``log.t[end - 1]`` (the user's latest event before ``end``);
    a trigger's time gap is that minus ``log.t[pos]``. Serving calls this with ``end`` = the end of
    the user's log, training with ``end`` = the target's position: one definition for both.
    A window of 2n positions is scanned back, doubled for the queries that need more: a loop
    over a few doubling rounds, not over queries.
    """
    user_pos = np.asarray(user_pos, np.int64)
    end = np.asarray(end, np.int64)
    q = len(user_pos)
    item = np.full((q, n_triggers), -1, np.int32)
    pos_out = np.full((q, n_triggers), -1, np.int64)
    if q == 0 or n_triggers <= 0 or len(log.item_pos) == 0:
        return item, pos_out
    if next_same is None:
        next_same = log.same_item_links()[1]
    start = log.indptr[user_pos]
    todo = np.arange(q)
    width = 2 * n_triggers
    while len(todo):
        e, s = end[todo], start[todo]
        pos = e[:, None] - 1 - np.arange(width)[None, :]
        ok = pos >= s[:, None]
        pc = np.where(ok, pos, 0)
        last = ok & (next_same[pc] >= e[:, None])  # the item's last occurrence before end
        rank = np.cumsum(last, axis=1) - 1
        done = (last.sum(axis=1) >= n_triggers) | ~ok[:, -1]
        r, c = np.nonzero(last & (rank < n_triggers) & done[:, None])
        item[todo[r], rank[r, c]] = log.item_pos[pos[r, c]]
        pos_out[todo[r], rank[r, c]] = pos[r, c]
        todo = todo[~done]
        width *= 2
    return item, pos_out


def user_sequences(log: EventLog, user_pos: np.ndarray, seq_len: int) -> np.ndarray:
    """Each user's last ``seq_len`` items (serving)."""
    user_pos = np.asarray(user_pos, np.int64)
    return sequences(log, user_pos, log.indptr[user_pos + 1], seq_len)


def item_categories(items: IdIndex, items_frame: pl.DataFrame | None, column: str = "category_id") -> tuple[np.ndarray, int]:
    """Dense category code per item (0 = unknown) and the number of categories."""
    cats = np.zeros(len(items), np.int32)
    if items_frame is None or column not in items_frame.columns:
        return cats, 0
    frame = items_frame.select("item_id", pl.col(column).cast(pl.Utf8)).drop_nulls()
    vocab = frame[column].unique().sort()
    code = frame.select(pl.col(column).replace_strict(vocab, pl.int_range(1, len(vocab) + 1, eager=True), return_dtype=pl.Int32))
    pos = items.positions(frame["item_id"])
    keep = pos >= 0
    cats[pos[keep]] = code.to_series().to_numpy()[keep]
    return cats, len(vocab)


def encode_user_features(users: IdIndex, users_frame: pl.DataFrame | None, columns) -> tuple[np.ndarray, list[int]]:
    """Dense codes (0 = unknown/null) for categorical user columns, per user position."""
    columns = list(columns or [])
    codes = np.zeros((len(users), len(columns)), np.int32)
    cards: list[int] = []
    if not columns:
        return codes, cards
    if users_frame is None:
        raise ValueError(f"user_features {columns} given but no users frame")
    missing = [c for c in columns if c not in users_frame.columns]
    if missing:
        raise ValueError(f"users frame lacks user feature columns {missing}")
    pos = users.positions(users_frame["user_id"])
    keep = pos >= 0
    for f, col in enumerate(columns):
        vals = users_frame[col].cast(pl.Utf8)
        vocab = vals.drop_nulls().unique().sort()
        code = vals.replace_strict(vocab, pl.int_range(1, len(vocab) + 1, eager=True), default=0, return_dtype=pl.Int32)
        codes[pos[keep], f] = code.to_numpy()[keep]
        cards.append(len(vocab))
    return codes, cards


def swing_at_slots(cooc: ItemIndex, swing: ItemIndex | None, values: str = "scores") -> np.ndarray | None:
    """Swing score (``values="counts"``: supporting user pairs) of every (trigger, cooc slot) pair,
    float32 [n_items, D]; -1 where the pair is not in Swing.

    Computed once per fit so featurizing a batch is a gather, not a binary search per pair.
    """
    if swing is None:
        return None
    flat = np.flatnonzero(cooc.targets.reshape(-1) >= 0)
    out = np.full(cooc.targets.size, -1.0, np.float32)
    score, count, rank = swing.lookup(flat // cooc.depth, cooc.targets.reshape(-1)[flat])
    out[flat] = np.where(rank < swing.depth, score if values == "scores" else count, -1.0)
    return out.reshape(cooc.targets.shape)


def cross_features(
    cooc: ItemIndex,
    swing_at: np.ndarray | None,
    categories: np.ndarray,
    trig: np.ndarray,
    tgt: np.ndarray,
    slot: np.ndarray,
    gap_us: np.ndarray,
    recency: np.ndarray,
    n_triggers: int,
    loo=None,
) -> np.ndarray:
    """Cross features (CROSS_FEATURES order) of trigger–target pairs: float32 [*slot.shape, 10].

    ``tgt`` and ``slot`` give each pair's target position and its slot in the trigger's cooc list
    (any target value where the slot is empty). ``trig``, ``gap_us`` and ``recency`` are either
    per pair (slot's shape) or, with a 2-D ``slot`` [B, C], per trigger row [B]. ``swing_at``
    comes from ``swing_at_slots`` (None: no Swing features). ``loo`` (recsys.pi2i.loo.LOOPairs,
    slot's shape) replaces the index's score, count, rank and Swing score of each pair by the
    values without the user's own contribution (training).
    """
    slot = np.asarray(slot, np.int64)

    def per_pair(a, dtype):
        a = np.asarray(a, dtype)
        return a[:, None] if slot.ndim == 2 and a.ndim == 1 else a

    trig = per_pair(trig, np.int64)
    out = np.empty((*slot.shape, len(CROSS_FEATURES)), np.float32)
    if loo is None:
        score, count, rank = cooc.scores[trig, slot], cooc.counts[trig, slot], slot
        sw = swing_at[trig, slot] if swing_at is not None else None
    else:
        score, count, rank, sw = loo.score, loo.count, loo.rank, loo.swing
    out[..., 0] = score
    out[..., 1] = np.log1p(count)
    out[..., 2] = rank * np.float32(1.0 / cooc.depth)
    out[..., 3] = 1.0 / (1.0 + np.asarray(rank).astype(np.float32))
    if sw is not None:
        out[..., 4] = np.log1p(np.maximum(sw, 0.0))
        out[..., 5] = sw >= 0
    else:
        out[..., 4:6] = 0.0
    cat_t = categories[trig]
    out[..., 6] = (cat_t == categories[np.asarray(tgt, np.int64)]) & (cat_t > 0)
    gap_h = np.maximum(per_pair(gap_us, np.float64), 0.0) / 3.6e9
    out[..., 7] = np.log1p(gap_h).astype(np.float32)
    out[..., 8] = per_pair(recency, np.float32) / max(n_triggers, 1)
    # With log-sum-exp pooling, a pair logit of log score + r log 0.8 IS the co-occurrence order.
    out[..., 9] = np.log(np.maximum(score, 0.0) + LOG_SCORE_EPS)
    return out
