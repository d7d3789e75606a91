"""PRS inputs: event logs, behaviour sequences, item categories, user codes, trigger–target crosses.

API::

    log = event_log(history, users, items)                 # EventLog: per-user chronological items
    seq = sequences(log, user_pos, end, seq_len)          # int32 [N, L], item position + 1, 0 = pad
    cats = item_categories(items, items_frame)             # int32 [n_items], 0 = unknown, 1.. categories
    codes, cards = encode_user_features(users, users_frame, columns)   # int32 [n_users, F], list[int]
    swing_at = swing_at_slots(cooc, swing)                  # float32 [n_items, D], -1 = not in Swing
    x = cross_features(cooc, swing_at, cats, trig, tgt, slot, gap_us, recency, n_triggers)  # [B, C, 9]

Cross features (CROSS_FEATURES order): co-occurrence score, log1p raw co-occurrence count, rank of
the target in the trigger's relaxed list as a fraction of the depth, 1/(1 + rank), log1p Swing
score, whether the pair is in the Swing list, same category, log1p of the hours between the
trigger and the moment of scoring (training: the target's event; serving: the user's latest
event), and the trigger's recency rank / n_triggers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.channels.base import IdIndex
from recsys.channels.itemcf import ItemIndex
from recsys.schema import with_event_position

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
)


@dataclass
class EventLog:
    """Chronological item positions per user (CSR-like), consecutive repeats of one item collapsed."""

    users: IdIndex
    items: IdIndex
    indptr: np.ndarray  # int64 [n_users + 1]
    item_pos: np.ndarray  # int32 [n_events]
    t: np.ndarray  # int64 [n_events], µs since epoch

    def user_of(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.users), dtype=np.int32), np.diff(self.indptr))


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
    # pv → cart → buy of one item is one step of the walk, not a self-transition.
    repeat = (pl.col("u") == pl.col("u").shift(1)) & (pl.col("i") == pl.col("i").shift(1))
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


def swing_at_slots(cooc: ItemIndex, swing: ItemIndex | None) -> np.ndarray | None:
    """Swing score of every (trigger, cooc slot) pair, float32 [n_items, D]; -1 where the pair is not in Swing.

    Computed once per fit so featurizing a batch is a gather, not a binary search per pair.
    """
    if swing is None:
        return None
    flat = np.flatnonzero(cooc.targets.reshape(-1) >= 0)
    out = np.full(cooc.targets.size, -1.0, np.float32)
    score, _, rank = swing.lookup(flat // cooc.depth, cooc.targets.reshape(-1)[flat])
    out[flat] = np.where(rank < swing.depth, score, -1.0)
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
) -> np.ndarray:
    """Cross features (CROSS_FEATURES order) of [B] triggers × [B, C] slots: float32 [B, C, 9].

    ``tgt`` [B, C] are the target positions at ``slot`` [B, C] of each trigger's cooc list (any
    value where the slot is empty); ``gap_us`` and ``recency`` are per trigger row [B];
    ``swing_at`` comes from ``swing_at_slots`` (None: no Swing features).
    """
    trig = np.asarray(trig, np.int64)[:, None]
    slot = np.asarray(slot, np.int64)
    b, n_c = slot.shape
    out = np.empty((b, n_c, len(CROSS_FEATURES)), np.float32)
    out[..., 0] = cooc.scores[trig, slot]
    out[..., 1] = np.log1p(cooc.counts[trig, slot])
    out[..., 2] = slot * np.float32(1.0 / cooc.depth)
    out[..., 3] = 1.0 / (1.0 + slot.astype(np.float32))
    if swing_at is not None:
        sw = swing_at[trig, slot]
        out[..., 4] = np.log1p(np.maximum(sw, 0.0))
        out[..., 5] = sw >= 0
    else:
        out[..., 4:6] = 0.0
    cat_t = categories[trig]
    out[..., 6] = (cat_t == categories[np.asarray(tgt, np.int64)]) & (cat_t > 0)
    gap_h = np.maximum(np.asarray(gap_us, np.float64), 0.0) / 3.6e9
    out[..., 7] = np.log1p(gap_h).astype(np.float32)[:, None]
    out[..., 8] = (np.asarray(recency, np.float32) / max(n_triggers, 1))[:, None]
    return out
