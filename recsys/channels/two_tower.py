"""Two-tower retrieval channel (stage ``two_tower``), trained in torch through a TorchRuntime.

API::

    TwoTowerChannel(dim=64, history_len=20, epochs=10, batch_size=1024, lr=5e-3, weight_decay=0.0,
                    temperature=0.05, logq_correction=True, validate=True, patience=3, eval_k=50,
                    score_batch=2048, max_samples_per_epoch=200_000, max_val_users=2_000)
        .fit(history, items=None, runtime=None) -> self
        .recommend(user_ids, k, exclude_seen=True) -> pl.DataFrame(user_id, item_id, score, rank)
        .to_bytes() -> bytes ;  TwoTowerChannel.from_bytes(blob, runtime=None) -> TwoTowerChannel
        .history_  list of per-epoch dicts {epoch, loss, n_samples, hit_rate@eval_k}
        .n_train_rows_, .n_val_users_, .n_val_scored_   training examples, held-out users, users scored

Model.  Item tower: item-id embedding + category embedding (``items.category_id`` when given),
L2-normalized.  User tower: MLP over [user-id embedding ; mean of the (unnormalized) item-tower
vectors of the user's previous ``history_len`` items], L2-normalized.  Score = dot / temperature.

Training.  One example per interaction, its context being the same user's items strictly before it
(ts order), so the user tower learns "what comes next" and never sees its own target.  Loss:
in-batch sampled softmax with the logQ correction (Yi et al., RecSys 2019): every in-batch logit
has log q_j subtracted, q_j = the item's share of training interactions (its probability of being
sampled as an in-batch negative); in-batch duplicates of the positive are masked.  Adam.

Cost budget.  Each epoch trains on a fresh seeded sample of at most ``max_samples_per_epoch``
examples (all of them when fewer; ``None`` or 0: always all), drawn from the same permutation as
before budgets existed, so a log within the budget trains exactly as it did; ``history_`` records
each epoch's ``n_samples``.  ML-100K's folds have 79k / 89k training examples: under the default
200k.  Synthetic 2M events, 1 CPU thread (bench/results_neural_budget.md): one epoch with validation
71 s with the budget, 678 s without.

Validation (``validate=True``): each user's last interaction (users with >= 2) is held out of
training; after every epoch HitRate@eval_k of the held-out item is logged over full-catalog,
seen-excluded retrieval, and the best epoch's weights are kept (early stop after ``patience``
epochs without gain).  Every held-out interaction stays out of training, but only a fixed seeded
sample of at most ``max_val_users`` of those users is scored per epoch (all of them on ML-100K:
750 / 866 per fold), so validation does not grow with the log either.  Serving contexts are then rebuilt from
the full history.

Catalog = history items plus ``items`` rows (cold items score through their category embedding).
Unknown users get global popularity.  Retrieval is the exact dot product, top-k in user blocks.
"""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.channels.base import IdIndex, interaction_matrix, topk_rows
from recsys.channels.popularity import category_codes, popularity_vector, recommend_dense, scaled
from recsys.runtime import TorchRuntime, capped_subset, epoch_sample

_PARAMS = (
    "dim",
    "history_len",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "temperature",
    "logq_correction",
    "validate",
    "patience",
    "eval_k",
    "score_batch",
    "max_samples_per_epoch",
    "max_val_users",
)


def _build_model(n_users: int, n_items: int, n_cats: int, dim: int):
    import torch
    from torch import nn

    class TwoTower(nn.Module):
        def __init__(self):
            super().__init__()
            # last row of each table is padding (no item / no category)
            self.item = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
            self.cat = nn.Embedding(n_cats + 1, dim, padding_idx=n_cats)
            self.user = nn.Embedding(n_users, dim)
            self.user_mlp = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
            for emb in (self.item, self.cat, self.user):
                nn.init.normal_(emb.weight, std=0.05)
                with torch.no_grad():
                    if emb.padding_idx is not None:
                        emb.weight[emb.padding_idx].zero_()

        def item_raw(self, item_idx, item_cat):
            return self.item(item_idx) + self.cat(item_cat)

        def item_vec(self, item_idx, item_cat):
            return nn.functional.normalize(self.item_raw(item_idx, item_cat), dim=-1)

        def user_vec(self, user_idx, ctx_idx, ctx_cat):
            # embedding_bag sums without materializing B × L × d (much cheaper on CPU); pads are skipped
            bag = nn.functional.embedding_bag
            total = bag(ctx_idx, self.item.weight, mode="sum", padding_idx=n_items) + bag(
                ctx_cat, self.cat.weight, mode="sum", padding_idx=n_cats
            )
            mean = total / (ctx_idx != n_items).sum(dim=1, keepdim=True).clamp(min=1)
            h = torch.cat([self.user(user_idx), mean], dim=-1)
            return nn.functional.normalize(self.user_mlp(h), dim=-1)

    return TwoTower()


class TwoTowerChannel:
    name = "two_tower"

    def __init__(
        self,
        dim: int = 64,
        history_len: int = 20,
        epochs: int = 10,
        batch_size: int = 1024,
        lr: float = 5e-3,
        weight_decay: float = 0.0,
        temperature: float = 0.05,
        logq_correction: bool = True,
        validate: bool = True,
        patience: int = 3,
        eval_k: int = 50,
        score_batch: int = 2048,
        max_samples_per_epoch: int | None = 200_000,
        max_val_users: int | None = 2_000,
    ):
        self.dim = dim
        self.history_len = history_len
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.logq_correction = logq_correction
        self.validate = validate
        self.patience = patience
        self.eval_k = eval_k
        self.score_batch = score_batch
        self.max_samples_per_epoch = max_samples_per_epoch
        self.max_val_users = max_val_users
        self.runtime = None

    # ---------------------------------------------------------------- data
    def _contexts(self, end_rows: np.ndarray, row_start: np.ndarray, seq_item: np.ndarray) -> np.ndarray:
        """Items at the ``history_len`` sorted positions before ``end_rows`` and not before the user's
        first row ``row_start`` (most recent first; pad = n_items)."""
        offs = end_rows[:, None] - np.arange(1, self.history_len + 1)[None, :]
        valid = offs >= row_start[:, None]
        return np.where(valid, seq_item[np.maximum(offs, 0)], len(self.items_)).astype(np.int64)

    def fit(self, history: pl.DataFrame, items: pl.DataFrame | None = None, runtime=None) -> TwoTowerChannel:
        import torch

        runtime = runtime or TorchRuntime()
        self.runtime = runtime
        runtime.seed_everything()
        item_ids = history["item_id"]
        if items is not None:
            item_ids = pl.concat([item_ids, items["item_id"].cast(pl.Int64)])
        self.items_ = IdIndex.from_values(item_ids)
        self.users_ = IdIndex.from_values(history["user_id"])
        cat, self.n_cats_ = category_codes(items, self.items_)
        self.item_cat_ = np.where(cat >= 0, cat, self.n_cats_).astype(np.int64)
        self.seen_ = interaction_matrix(history, self.users_, self.items_, binary=True)
        self.pop_ = scaled(popularity_vector(history, self.items_))

        # users grouped in dense-position order, never in user-id order: the training rows (and so the
        # seeded permutations over them) do not depend on how ids are numbered
        seq = history.select("user_id", "item_id", "ts", "seq")
        seq = seq.with_columns(pl.Series("_u", self.users_.positions(seq["user_id"]))).sort("_u", "ts", "seq", maintain_order=True)
        seq_user = seq["_u"].to_numpy().astype(np.int64)
        seq_item = self.items_.positions(seq["item_id"]).astype(np.int64)
        n = len(seq_item)
        first = np.r_[True, seq_user[1:] != seq_user[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
        last = np.r_[seq_user[1:] != seq_user[:-1], True]
        held = last & ~first if self.validate else np.zeros(n, bool)  # users with >= 2 events
        train_rows = np.flatnonzero(~held)
        val_rows = np.flatnonzero(held)
        self.n_train_rows_, self.n_val_users_ = len(train_rows), len(val_rows)
        # every held-out row stays out of training; per epoch only a fixed seeded subset is scored
        val_rows = val_rows[capped_subset(len(val_rows), self.max_val_users, runtime.seed)]
        self.n_val_scored_ = len(val_rows)
        budget = self.max_samples_per_epoch
        runtime.log(
            f"two_tower: {len(train_rows)} training examples "
            f"({min(len(train_rows), budget) if budget else len(train_rows)} sampled per epoch), "
            f"{self.n_val_users_} validation users ({self.n_val_scored_} scored per epoch)"
        )

        counts = np.bincount(seq_item[train_rows], minlength=len(self.items_)).astype(np.float64)
        log_q = np.log(np.maximum(counts, 1.0) / max(len(train_rows), 1)).astype(np.float32)

        device = runtime.torch_device()
        model = _build_model(len(self.users_), len(self.items_), self.n_cats_, self.dim).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        item_cat_t = torch.from_numpy(np.r_[self.item_cat_, self.n_cats_]).to(device)  # pad item -> pad cat
        log_q_t = torch.from_numpy(log_q).to(device)
        gen = runtime.generator()

        if len(val_rows):
            val_seen = sp.csr_matrix(
                (np.ones(len(train_rows), np.float32), (seq_user[train_rows], seq_item[train_rows])),
                shape=(len(self.users_), len(self.items_)),
            )
            val_seen.sum_duplicates()
        self.history_ = []
        best_hr, best_state, best_epoch, stale = -1.0, None, 0, 0
        for epoch in range(1, self.epochs + 1):
            model.train()
            perm = train_rows[epoch_sample(len(train_rows), self.max_samples_per_epoch, gen)]
            total, steps = 0.0, 0
            for s in range(0, len(perm), self.batch_size):
                rows = perm[s : s + self.batch_size]
                ctx = torch.from_numpy(self._contexts(rows, start[rows], seq_item)).to(device)
                u = torch.from_numpy(seq_user[rows]).to(device)
                pos = torch.from_numpy(seq_item[rows]).to(device)
                with runtime.autocast():
                    uv = model.user_vec(u, ctx, item_cat_t[ctx])
                    iv = model.item_vec(pos, item_cat_t[pos])
                    logits = (uv @ iv.T).float() / self.temperature
                if self.logq_correction:
                    logits = logits - log_q_t[pos][None, :]
                dup = (pos[:, None] == pos[None, :]) & ~torch.eye(len(rows), dtype=torch.bool, device=device)
                logits = logits.masked_fill(dup, float("-inf"))
                loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(rows), device=device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                steps += 1
            record = {"epoch": epoch, "loss": total / max(steps, 1), "n_samples": len(perm)}
            msg = f"two_tower epoch {epoch}/{self.epochs} ({len(perm)} examples) loss={record['loss']:.4f}"
            if len(val_rows):
                self.model_ = model
                hr = self._hit_rate(val_rows, seq_user, seq_item, start, val_seen)
                record[f"hit_rate@{self.eval_k}"] = hr
                msg += f" val HitRate@{self.eval_k}={hr:.4f}"
                if hr > best_hr:
                    best_hr, best_epoch, stale = hr, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
            self.history_.append(record)
            runtime.log(msg)
            if len(val_rows) and stale >= self.patience:
                runtime.log(f"two_tower early stop: best epoch {best_epoch} HitRate@{self.eval_k}={best_hr:.4f}")
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        self.model_ = model.eval()
        self.best_epoch_ = best_epoch or len(self.history_)
        # serving context: each user's last history_len items of the full history
        last_rows = np.flatnonzero(last)
        self.ctx_ = self._contexts(last_rows + 1, start[last_rows], seq_item)
        self._refresh_item_vectors()
        return self

    # ------------------------------------------------------------- scoring
    def _refresh_item_vectors(self) -> None:
        import torch

        device = self.runtime.torch_device()
        with torch.no_grad(), self.runtime.autocast():
            idx = torch.arange(len(self.items_), device=device)
            cat = torch.from_numpy(self.item_cat_).to(device)
            self.item_vecs_ = self.model_.item_vec(idx, cat).float()

    def _user_scores(self, user_pos: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        import torch

        device = self.runtime.torch_device()
        item_cat_t = torch.from_numpy(np.r_[self.item_cat_, self.n_cats_]).to(device)
        with torch.no_grad():
            with self.runtime.autocast():
                ctx_t = torch.from_numpy(ctx).to(device)
                uv = self.model_.user_vec(torch.from_numpy(user_pos.astype(np.int64)).to(device), ctx_t, item_cat_t[ctx_t])
            # the scores in fp32 outside autocast (under bf16 autocast a product is bf16, which numpy cannot hold)
            return (uv.float() @ self.item_vecs_.T).cpu().numpy()

    def _hit_rate(self, val_rows, seq_user, seq_item, start, val_seen) -> float:
        self.model_.eval()
        self._refresh_item_vectors()
        hits = 0
        for s in range(0, len(val_rows), self.score_batch):
            rows = val_rows[s : s + self.score_batch]
            users = seq_user[rows]
            scores = self._user_scores(users, self._contexts(rows, start[rows], seq_item))
            idx, _ = topk_rows(scores, self.eval_k, val_seen[users])
            hits += int((idx == seq_item[rows][:, None]).any(axis=1).sum())
        return hits / len(val_rows)

    def _score_block(self, user_pos: np.ndarray) -> np.ndarray:
        return self._user_scores(user_pos, self.ctx_[user_pos])

    def recommend(self, user_ids, k: int, exclude_seen: bool = True) -> pl.DataFrame:
        return recommend_dense(
            user_ids,
            k,
            self.users_,
            self.items_,
            self._score_block,
            self.seen_ if exclude_seen else None,
            self.pop_,
            self.score_batch,
        )

    # --------------------------------------------------------- persistence
    def to_bytes(self) -> bytes:
        import torch

        blob = {
            "params": {p: getattr(self, p) for p in _PARAMS},
            "n_cats": int(self.n_cats_),
            "best_epoch": int(self.best_epoch_),
            "history": [dict(r) for r in self.history_],
            "state": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()},
            "user_ids": torch.from_numpy(self.users_.ids),
            "item_ids": torch.from_numpy(self.items_.ids),
            "item_cat": torch.from_numpy(self.item_cat_),
            "ctx": torch.from_numpy(self.ctx_),
            "seen_indptr": torch.from_numpy(self.seen_.indptr.astype(np.int64)),
            "seen_indices": torch.from_numpy(self.seen_.indices.astype(np.int64)),
            "pop": torch.from_numpy(self.pop_),
        }
        buf = io.BytesIO()
        torch.save(blob, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, runtime: TorchRuntime | None = None) -> TwoTowerChannel:
        import torch

        data = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        self = cls(**data["params"])
        self.runtime = runtime or TorchRuntime()
        self.users_ = IdIndex(data["user_ids"].numpy())
        self.items_ = IdIndex(data["item_ids"].numpy())
        self.item_cat_ = data["item_cat"].numpy()
        self.n_cats_ = data["n_cats"]
        self.best_epoch_ = data["best_epoch"]
        self.history_ = data["history"]
        self.ctx_ = data["ctx"].numpy()
        indptr, indices = data["seen_indptr"].numpy(), data["seen_indices"].numpy()
        self.seen_ = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(self.users_), len(self.items_)))
        self.pop_ = data["pop"].numpy()
        model = _build_model(len(self.users_), len(self.items_), self.n_cats_, self.dim)
        model.load_state_dict(data["state"])
        self.model_ = model.to(self.runtime.torch_device()).eval()
        self._refresh_item_vectors()
        return self
