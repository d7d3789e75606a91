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

Serving: the user's last ``n_triggers`` distinct items are triggers (features.triggers_at at the
end of the user's log, the same function training uses at each target's position); every target
in a trigger's relaxed list is a candidate. PRS scores each (user, trigger, candidate) pair; a
candidate's score is the log-sum-exp of its pair logits over the triggers that reach it, turned
into a probability over the user's unseen pool. Training optimizes exactly this score (softmax
over the pool, train.pooled_logits), so triggers with lists of different lengths and candidates
reached by one or by many triggers are on one scale. Seen items are excluded; ties break by item
position.
"""

from __future__ import annotations

import io
import json

import numpy as np
import polars as pl
import torch

from recsys.channels.base import IdIndex, recs_frame
from recsys.channels.itemcf import ItemIndex, build_cooc_index, build_swing_index, topk_sparse
from recsys.pi2i.features import CROSS_FEATURES, EventLog, encode_user_features, event_log, item_categories, swing_at_slots, triggers_at
from recsys.pi2i.loo import own_contributions
from recsys.pi2i.model import PRSConfig, PRSModel
from recsys.pi2i.train import PRSData, _reduce, cooc_order_start, pool_scores, train_prs, training_examples
from recsys.runtime import TorchRuntime


class PI2I:
    name = "pi2i"

    def __init__(
        self,
        depth: int = 300,
        n_triggers: int = 10,
        seq_len: int = 30,
        with_swing: bool = True,
        leave_one_out: bool = True,
        start_from_cooc: bool = True,
        dim: int = 32,
        heads: int = 2,
        hidden: tuple[int, ...] = (64, 32),
        epochs: int = 4,
        batch_size: int = 512,
        lr: float = 2e-3,
        n_negatives: int = 16,
        hard_negatives: float = 0.0,
        val_fraction: float = 0.1,
        max_train_per_epoch: int | None = 8_000,
        max_val: int = 1_000,
        max_examples: int | None = 500_000,
        cooc_params: dict | None = None,
        swing_params: dict | None = None,
        score_batch_pairs: int = 131_072,
    ):
        self.params = dict(
            depth=depth,
            n_triggers=n_triggers,
            seq_len=seq_len,
            with_swing=with_swing,
            leave_one_out=leave_one_out,
            start_from_cooc=start_from_cooc,
            dim=dim,
            heads=heads,
            hidden=list(hidden),
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            n_negatives=n_negatives,
            hard_negatives=hard_negatives,
            val_fraction=val_fraction,
            max_train_per_epoch=max_train_per_epoch,
            max_val=max_val,
            max_examples=max_examples,
            cooc_params=dict(cooc_params or {}),
            swing_params=dict(swing_params or {}),
            score_batch_pairs=score_batch_pairs,
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
        own = own_contributions(history, self.users_, self.items_, **p["cooc_params"]) if p["leave_one_out"] else None
        self.data_ = PRSData(
            cooc,
            swing_at_slots(cooc, swing),
            categories,
            codes,
            log,
            p["n_triggers"],
            p["seq_len"],
            own=own,
            swing_count_at=swing_at_slots(cooc, swing, "counts"),
        )
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
        if p.get("start_from_cooc", True):
            self.model_.start_at(cooc_order_start(p["n_triggers"]))
        examples = training_examples(self.data_, p.get("max_examples"), np.random.default_rng(self.runtime.seed), loo=p["leave_one_out"])
        self.report_ = train_prs(
            self.model_,
            self.data_,
            examples,
            self.runtime,
            epochs=p["epochs"],
            batch_size=p["batch_size"],
            lr=p["lr"],
            n_negatives=p["n_negatives"],
            hard_negatives=p.get("hard_negatives", 0.0),
            val_fraction=p["val_fraction"],
            max_train_per_epoch=p.get("max_train_per_epoch"),
            max_val=p.get("max_val", 1_000),
            loo=p["leave_one_out"],
        )
        self.data_.own = None  # training-only (the users' basket cells); serving never subtracts
        return self

    # ------------------------------------------------------------------------------------------
    def _user_rows(self, user_ids) -> tuple[np.ndarray, np.ndarray]:
        user_ids = np.asarray(user_ids.to_numpy() if isinstance(user_ids, pl.Series) else user_ids, np.int64)
        return user_ids, self.users_.positions(user_ids)

    def _candidate_scores(self, upos: np.ndarray, exclude_seen: bool):
        """(row, item position, score) of every reachable candidate of the users at ``upos``.

        score = exp(pooled logit − log-sum-exp of the user's unseen pool): the probability PRS
        gives the candidate among the user's unseen candidates (seen items, when kept, are scored
        on the same scale).
        """
        data, p = self.data_, self.params
        rows = np.flatnonzero(upos >= 0)
        user = upos[rows].astype(np.int64)
        end = data.log.indptr[user + 1]
        trig, trig_pos = triggers_at(data.log, user, end, p["n_triggers"])
        device = self.runtime.torch_device()
        q, c, logit, _ = pool_scores(
            self.model_, data, user, end, trig, trig_pos, device, self.runtime, exclude_seen=False, batch_pairs=p["score_batch_pairs"]
        )
        unseen = data.first_seen(user[q], c) >= end[q]
        norm = np.full(len(rows), np.inf)
        if unseen.any():
            uq, lse = _reduce(q[unseen], (logit[unseen], "lse"))
            norm[uq] = lse
        score = np.exp(logit - norm[q])
        if exclude_seen:
            q, c, score = q[unseen], c[unseen], score[unseen]
        return rows[q], c, score.astype(np.float32)

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
        self.config_ = PRSConfig.from_dict(meta["config"])
        self.model_ = PRSModel(self.config_)
        self.model_.load_state_dict(obj["state_dict"])
        self.model_.eval()
        return self
