"""PI2I end to end: relaxed index (IBS) + PRS scoring, as a candidate channel.

API::

    pi2i = PI2I(depth=300, n_triggers=10, seq_len=30, epochs=4).fit(
        history, items=items_frame, users=users_frame, user_features=["age_bucket", ...], runtime=rt)
    pi2i.recommend(user_ids, k=100, exclude_seen=True)   # user_id, item_id, score, rank
    pi2i.score_pairs(frame)        # frame (user_id, item_id, ...) + pi2i_score (Float64, null = unreachable)
    blob = pi2i.to_bytes(); PI2I.from_bytes(blob, runtime=rt)   # same recommendations
    pi2i.report_                   # training report: per-epoch loss / validation hit rates, sizes

``items`` may carry ``category_id`` (an item feature and the same-category cross); ``users`` the
categorical ``user_features`` columns (e.g. the OutRank-selected ones). ``runtime`` is a
recsys.runtime.TorchRuntime; None means TorchRuntime() (CPU, seed 0).

Serving: the user's last ``n_triggers`` distinct items are triggers; every target in a trigger's
relaxed list is a candidate (within ``max_score_pairs``, triggers × depth per call; over it, each
list's co-occurrence-order head that fits, ``serving_depth``, never under 50 slots;
bench/results_pi2i_budget.md). PRS scores each (user, trigger, candidate); the score of a candidate
under one trigger is its softmax probability within that trigger's list (what training fits),
times ``recency_decay ** r`` for the trigger's recency rank r (the softmax removes any per-trigger
level, so the prior across triggers comes from recency). A candidate reached from several
triggers keeps the MAX over them: one strong trigger is enough evidence, and a sum would favour
items that are merely in many lists (popular ones). Seen items are excluded; ties break by item
position.
"""

from __future__ import annotations

import io
import json

import numpy as np
import polars as pl
import torch

from recsys.channels.base import IdIndex, recs_frame
from recsys.channels.itemcf import (
    ItemIndex,
    UserTriggers,
    build_cooc_index,
    build_swing_index,
    reduce_pairs,
    seen_keys,
    topk_sparse,
    user_triggers,
)
from recsys.pi2i.features import (
    CROSS_FEATURES,
    EventLog,
    encode_user_features,
    event_log,
    item_categories,
    swing_at_slots,
    user_sequences,
)
from recsys.pi2i.model import PRSConfig, PRSModel
from recsys.pi2i.train import PRSData, _forward, featurize, train_prs, training_examples
from recsys.runtime import TorchRuntime

SERVING_DEPTH_FLOOR = 50


def serving_depth(n_triggers: int, depth: int, max_pairs: int | None, floor: int = SERVING_DEPTH_FLOOR) -> int:
    """How deep into each trigger's list serving scores: the whole relaxed list (``depth``) while
    ``n_triggers * depth`` is within ``max_pairs`` (None: no cap), else the cooc-order head that fits
    the cap, never shallower than ``floor`` (nor deeper than ``depth``). Scoring cost is one PRS
    forward per (trigger, slot), so the cap makes it follow the budget instead of the user count."""
    if not max_pairs or n_triggers * depth <= max_pairs:
        return depth
    return min(depth, max(floor, int(max_pairs) // max(n_triggers, 1)))


class PI2I:
    name = "pi2i"

    def __init__(
        self,
        depth: int = 300,
        n_triggers: int = 10,
        seq_len: int = 30,
        trigger_window: int = 1,
        with_swing: bool = True,
        recency_decay: float = 0.7,
        dim: int = 32,
        heads: int = 2,
        hidden: tuple[int, ...] = (64, 32),
        epochs: int = 4,
        batch_size: int = 512,
        lr: float = 2e-3,
        n_negatives: int = 16,
        val_fraction: float = 0.1,
        max_train_per_epoch: int | None = 20_000,
        max_val: int = 1_000,
        cooc_params: dict | None = None,
        swing_params: dict | None = None,
        score_batch_pairs: int = 131_072,
        max_score_pairs: int | None = 10_000_000,
    ):
        self.params = dict(
            depth=depth,
            n_triggers=n_triggers,
            seq_len=seq_len,
            trigger_window=trigger_window,
            with_swing=with_swing,
            recency_decay=recency_decay,
            dim=dim,
            heads=heads,
            hidden=list(hidden),
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            n_negatives=n_negatives,
            val_fraction=val_fraction,
            max_train_per_epoch=max_train_per_epoch,
            max_val=max_val,
            cooc_params=dict(cooc_params or {}),
            swing_params=dict(swing_params or {}),
            score_batch_pairs=score_batch_pairs,
            max_score_pairs=max_score_pairs,
        )

    # ------------------------------------------------------------------------------------------
    def fit(
        self,
        history: pl.DataFrame,
        items: pl.DataFrame | None = None,
        users: pl.DataFrame | None = None,
        user_features=(),
        runtime: TorchRuntime | None = None,
    ) -> PI2I:
        if isinstance(users, TorchRuntime):  # called positionally as Channel.fit(history, items, runtime)
            users, runtime = None, users
        p = self.params
        self.runtime = runtime or TorchRuntime()
        item_ids = history["item_id"] if items is None else pl.concat([history["item_id"], items["item_id"]])
        self.items_ = IdIndex.from_values(item_ids)
        self.users_ = IdIndex.from_values(history["user_id"])
        self.runtime.log(f"pi2i: building relaxed co-occurrence index, depth {p['depth']}")
        cooc = build_cooc_index(history, p["depth"], items=self.items_, **p["cooc_params"])
        swing = build_swing_index(history, p["depth"], items=self.items_, **p["swing_params"]) if p["with_swing"] else None
        categories, n_categories = item_categories(self.items_, items)
        self.user_features = list(user_features or [])
        codes, cards = encode_user_features(self.users_, users, self.user_features)
        log = event_log(history, self.users_, self.items_)
        self.data_ = PRSData(cooc, swing_at_slots(cooc, swing), categories, codes, log, p["n_triggers"], p["seq_len"])
        self.triggers_ = user_triggers(history, self.users_, self.items_, p["n_triggers"])
        self.seen_ = seen_keys(history, self.users_, self.items_)
        self.config_ = PRSConfig(
            n_items=len(self.items_),
            n_categories=n_categories,
            user_cardinalities=cards,
            n_cross=len(CROSS_FEATURES),
            dim=p["dim"],
            heads=p["heads"],
            seq_len=p["seq_len"],
            hidden=tuple(p["hidden"]),
        )
        self.runtime.seed_everything()
        self.model_ = PRSModel(self.config_, torch.from_numpy(categories))
        examples = training_examples(log, cooc, p["trigger_window"])
        self.report_ = train_prs(
            self.model_,
            self.data_,
            examples,
            self.runtime,
            epochs=p["epochs"],
            batch_size=p["batch_size"],
            lr=p["lr"],
            n_negatives=p["n_negatives"],
            val_fraction=p["val_fraction"],
            max_train_per_epoch=p.get("max_train_per_epoch"),
            max_val=p.get("max_val", 1_000),
        )
        return self

    # ------------------------------------------------------------------------------------------
    def _user_rows(self, user_ids) -> tuple[np.ndarray, np.ndarray]:
        user_ids = np.asarray(user_ids.to_numpy() if isinstance(user_ids, pl.Series) else user_ids, np.int64)
        return user_ids, self.users_.positions(user_ids)

    def _candidate_scores(self, upos: np.ndarray, exclude_seen: bool):
        """(row, item position, score) of every reachable candidate of the users at ``upos``, max over triggers."""
        data, trig, p = self.data_, self.triggers_, self.params
        row_of_user = np.full(len(self.users_), -1, np.int64)
        known = upos >= 0
        row_of_user[upos[known]] = np.flatnonzero(known)
        t_row = row_of_user[trig.user_pos]
        sel = (t_row >= 0) & (data.cooc.list_lengths()[trig.item_pos] > 0)
        t_row, t_user, t_item = t_row[sel], trig.user_pos[sel], trig.item_pos[sel]
        t_rec, t_time = trig.recency[sel], trig.t_last[sel]
        gap = trig.user_t_last[t_user] - t_time
        d = serving_depth(len(t_row), data.cooc.depth, p.get("max_score_pairs"))
        self.serving_depth_ = d
        if d < data.cooc.depth:
            self.runtime.log(
                f"pi2i: {len(t_row)} triggers x depth {data.cooc.depth} is over max_score_pairs={p['max_score_pairs']}: "
                f"each trigger's list is scored to depth {d} (its cooc-order head)"
            )
        device = self.runtime.torch_device()
        rows, cands, scores = [], [], []
        per_batch = max(1, p["score_batch_pairs"] // d)
        self.model_.to(device).eval()
        with torch.no_grad(), self.runtime.autocast():
            for a in range(0, len(t_row), per_batch):
                s = slice(a, a + per_batch)
                slots = np.broadcast_to(np.arange(d), (len(t_row[s]), d))
                # One behaviour sequence (and its attention keys) per user, shared by the user's triggers.
                seq_users, example_seq = np.unique(t_user[s], return_inverse=True)
                seq = user_sequences(data.log, seq_users, data.seq_len)
                batch = featurize(data, t_user[s], t_item[s], slots, gap[s], t_rec[s], seq, device, example_seq)
                logp = torch.log_softmax(_forward(self.model_, batch), dim=1).cpu().numpy()
                logp += (t_rec[s] * np.log(p["recency_decay"]))[:, None]
                valid = batch["valid"].cpu().numpy()
                r_idx, c_idx = np.nonzero(valid)
                rows.append(t_row[s][r_idx])
                cands.append(data.cooc.targets[t_item[s][r_idx], c_idx])
                scores.append(logp[r_idx, c_idx])
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
        rows, cands, scores = np.concatenate(rows), np.concatenate(cands), np.concatenate(scores)
        if exclude_seen:
            keys = upos[rows].astype(np.int64) * len(self.items_) + cands
            ok = ~np.isin(keys, self.seen_)
            rows, cands, scores = rows[ok], cands[ok], scores[ok]
        r, c, v = reduce_pairs(rows, cands, scores.astype(np.float32), len(self.items_), "max")
        return r, c, np.exp(v).astype(np.float32)

    def recommend(self, user_ids, k: int, exclude_seen: bool = True) -> pl.DataFrame:
        user_ids, upos = self._user_rows(user_ids)
        r, c, v = self._candidate_scores(upos, exclude_seen)
        idx, val, _ = topk_sparse(r, c, v, len(user_ids), k)
        return recs_frame(user_ids, idx, val, self.items_)

    def score_pairs(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` plus ``pi2i_score``: the serving score of (user_id, item_id), null when no trigger reaches it."""
        user_ids = frame["user_id"].unique().to_numpy()
        user_ids, upos = self._user_rows(user_ids)
        r, c, v = self._candidate_scores(upos, exclude_seen=False)
        scored = pl.DataFrame(
            {"user_id": user_ids[r], "item_id": self.items_.ids[c], "pi2i_score": v.astype(np.float64)},
            schema={"user_id": pl.Int64, "item_id": pl.Int64, "pi2i_score": pl.Float64},
        )
        return frame.join(scored, on=["user_id", "item_id"], how="left", maintain_order="left")

    # ------------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        d = self.data_
        arrays = {
            "items": self.items_.ids,
            "users": self.users_.ids,
            "categories": d.categories,
            "user_codes": d.user_codes,
            "cooc_targets": d.cooc.targets,
            "cooc_scores": d.cooc.scores,
            "cooc_counts": d.cooc.counts,
            "log_indptr": d.log.indptr,
            "log_item_pos": d.log.item_pos,
            "log_t": d.log.t,
            "trig_user_pos": self.triggers_.user_pos,
            "trig_item_pos": self.triggers_.item_pos,
            "trig_recency": self.triggers_.recency,
            "trig_t_last": self.triggers_.t_last,
            "trig_user_t_last": self.triggers_.user_t_last,
            "seen": self.seen_,
        }
        if d.swing_at is not None:
            arrays["swing_at"] = d.swing_at
        meta = {"params": self.params, "config": self.config_.to_dict(), "user_features": self.user_features, "report": self.report_}
        buf = io.BytesIO()
        torch.save(
            {
                "meta": json.dumps(meta),
                "state_dict": self.model_.state_dict(),
                "arrays": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
            },
            buf,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, runtime: TorchRuntime | None = None) -> PI2I:
        obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        meta = json.loads(obj["meta"])
        a = {k: v.numpy() for k, v in obj["arrays"].items()}
        self = cls()
        self.params = meta["params"]
        self.user_features = meta["user_features"]
        self.report_ = meta["report"]
        self.runtime = runtime or TorchRuntime()
        self.items_, self.users_ = IdIndex(a["items"]), IdIndex(a["users"])
        cooc = ItemIndex(self.items_, a["cooc_targets"], a["cooc_scores"], a["cooc_counts"], "cooc")
        log = EventLog(self.users_, self.items_, a["log_indptr"], a["log_item_pos"], a["log_t"])
        self.data_ = PRSData(
            cooc, a.get("swing_at"), a["categories"], a["user_codes"], log, self.params["n_triggers"], self.params["seq_len"]
        )
        self.triggers_ = UserTriggers(
            self.users_, a["trig_user_pos"], a["trig_item_pos"], a["trig_recency"], a["trig_t_last"], a["trig_user_t_last"]
        )
        self.seen_ = a["seen"]
        self.config_ = PRSConfig.from_dict(meta["config"])
        self.model_ = PRSModel(self.config_)
        self.model_.load_state_dict(obj["state_dict"])
        self.model_.eval()
        return self
