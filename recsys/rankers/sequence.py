"""Transformer sequence reranker (a small BERT encoder from ``transformers``), trained listwise.

API::

    ranker = SequenceRanker(SequenceRankerParams(...)).fit(frame, history, items=None, runtime=runtime)
    ranker.predict(frame, history, runtime) -> np.ndarray        # one score per row, frame order
    ranker.recommend(frame, history, k, runtime) -> pl.DataFrame  # user_id, item_id, score, rank
    # both take width=: pad every user's list to that many slots (scoring a table in blocks of users)
    ranker.best_epoch, ranker.valid_ndcg10, ranker.train_losses   # early-stopping record
    ranker.epoch_samples, ranker.n_valid_users, ranker.n_valid_scored  # per-epoch training lists, validation users
    ranker.to_bytes() / SequenceRanker.from_bytes(blob)           # torch.save of weights + vocab

``frame`` is a ranker frame (user_id, item_id, optional channel features, ``label`` for fit: see
recsys.rankers.features); ``history`` an interactions frame, the same one the frame's features were
built from (train for the ``valid`` fold, train + valid for ``test``). ``items`` (item_id,
category_id) adds a category embedding to every item token and puts the whole catalog in the
vocabulary; items unknown at fit time share one UNK token.

Architecture (one encoder pass per user, not per candidate). The user's last ``max_len`` distinct
items, ordered by their latest interaction (right-aligned, left-padded, so position ids encode
recency), plus a final learned [USER] token go through ``transformers.BertModel`` (built from a
``BertConfig``, random init, fed ``inputs_embeds`` = item + category embeddings; nothing
downloaded). The [USER] hidden state is the user state u; the hidden states H are the memory.
Each candidate embedding e then gets a target attention over H (query = W·e), giving a context c;
the score is MLP([e, c, e*u, e*c, features] + a per-user projection of u) plus a linear (wide)
term on the features. Scoring M candidates costs one encoder pass plus M attention reads.

Features (``feature_cols``; default: every numeric ranker feature — channel, user, item, user×item;
not the ``cat__*`` codes): ranks become 1/rank, other values sign·log1p(|x|) standardized with
training statistics; missing values become 0. ``feature_cols=()`` gives a pure sequence model.

Training is listwise: per user, softmax cross-entropy of the candidate scores against the label
distribution (label / sum of labels) over a list of at most ``max_candidates`` candidates —
all positives kept, negatives resampled every epoch. Users without a positive are dropped (no
target). A seeded hash of user_id holds out ``valid_fraction`` of the users; every epoch logs
loss and their NDCG@``eval_at`` over their full candidate lists, and the best epoch's weights are
kept (early stopping after ``patience`` epochs without improvement).

Cost budget: a training example is one user's candidate list. Each epoch trains on a fresh seeded
sample of at most ``max_samples_per_epoch`` training users (all when fewer; None or 0: always all),
and the per-epoch NDCG is computed on a fixed seeded sample of at most ``max_valid_users`` of the
held-out users; after training, every held-out user is scored once (``holdout_scores`` and
``valid_ndcg10`` cover them all, as final_stage expects). A frame within both budgets (ML-100K:
< 1,000 users) trains exactly as before; ``epoch_samples`` records each epoch's list count. With at
most ``oof_max_users`` labelled users, ``holdout_scores`` covers every one of them out of fold: each
other hash slice of users is scored by a fresh network trained without it for the best epoch count
(``_out_of_fold``), so the final-stage guard reads all labelled users instead of one fifth.
"""

from __future__ import annotations

import copy
import io
import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import torch
from torch import nn

from recsys.channels.base import IdIndex
from recsys.rankers.features import CAT_PREFIX, LABEL, _last_items, feature_columns, grouped_ndcg_at_k, holdout_users, user_slices
from recsys.rankers.lgbm import rank_frame
from recsys.runtime import TorchRuntime, capped_subset, epoch_sample

PAD, USER, UNK = 0, 1, 2
N_SPECIAL = 3


@dataclass(frozen=True)
class SequenceRankerParams:
    max_len: int = 50
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    mlp_hidden: int = 64
    max_candidates: int = 100
    feature_cols: tuple[str, ...] | None = None  # None: every numeric ranker feature; () for none
    epochs: int = 20
    batch_users: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    valid_fraction: float = 0.2
    min_valid_users: int = 5
    patience: int = 3
    eval_at: int = 10
    predict_batch_users: int = 256
    max_samples_per_epoch: int | None = 20_000  # training users (candidate lists) per epoch
    max_valid_users: int | None = 5_000  # held-out users scored after every epoch
    # with at most this many labelled users, holdout_scores covers all of them out of fold (as LGBMRankerParams)
    oof_max_users: int = 2000


def default_feature_cols(frame: pl.DataFrame) -> list[str]:
    """Every numeric ranker feature (channels, user, item, user×item); ``cat__*`` codes are not numeric."""
    return [c for c in feature_columns(frame) if not c.startswith(CAT_PREFIX)]


class _Net(nn.Module):
    def __init__(self, n_tokens: int, n_categories: int, n_features: int, p: SequenceRankerParams):
        super().__init__()
        from transformers import BertConfig, BertModel

        d = p.hidden
        self.item_emb = nn.Embedding(n_tokens, d, padding_idx=PAD)
        self.cat_emb = nn.Embedding(n_categories + 1, d, padding_idx=0)  # 0 = no category
        self.register_buffer("token_cat", torch.zeros(n_tokens, dtype=torch.long))
        config = BertConfig(
            vocab_size=1,  # unused: tokens enter as inputs_embeds
            hidden_size=d,
            num_hidden_layers=p.layers,
            num_attention_heads=p.heads,
            intermediate_size=2 * d,
            hidden_dropout_prob=p.dropout,
            attention_probs_dropout_prob=p.dropout,
            max_position_embeddings=p.max_len + 1,
            type_vocab_size=1,
        )
        self.encoder = BertModel(config, add_pooling_layer=False)
        self.query = nn.Linear(d, d, bias=False)
        # First MLP layer split in two: the user-state part is computed once per user, not per candidate.
        self.cand_in = nn.Linear(4 * d + n_features, p.mlp_hidden)
        self.user_in = nn.Linear(d, p.mlp_hidden, bias=False)
        self.mlp = nn.Sequential(
            nn.GELU(),
            nn.Dropout(p.dropout),
            nn.Linear(p.mlp_hidden, p.mlp_hidden // 2),
            nn.GELU(),
            nn.Linear(p.mlp_hidden // 2, 1),
        )
        # Wide part: a linear term on the ranker features, so the feature-driven ordering is learnt in a few steps.
        self.wide = nn.Linear(n_features, 1, bias=False) if n_features else None
        self.scale = 1.0 / math.sqrt(d)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.item_emb(tokens) + self.cat_emb(self.token_cat[tokens])

    def forward(self, seq: torch.Tensor, cand: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """seq [B, L+1] tokens ending in USER; cand [B, M] tokens; feats [B, M, F] -> scores [B, M]."""
        seq_mask = seq != PAD
        hidden = self.encoder(inputs_embeds=self.embed(seq), attention_mask=seq_mask.long()).last_hidden_state
        user = hidden[:, -1:, :]  # [B, 1, d]
        e = self.embed(cand)  # [B, M, d]
        att = torch.einsum("bmd,bld->bml", self.query(e), hidden) * self.scale
        att = att.masked_fill(~seq_mask[:, None, :], float("-inf")).softmax(-1)
        ctx = torch.einsum("bml,bld->bmd", att, hidden)
        u = user.expand_as(e)
        h = self.cand_in(torch.cat([e, ctx, e * u, e * ctx, feats], dim=-1)) + self.user_in(user)
        score = self.mlp(h).squeeze(-1)
        if self.wide is not None:
            score = score + self.wide(feats).squeeze(-1)
        return score


@dataclass
class _Lists:
    """A frame as padded per-user candidate lists (users sorted, rows of the frame mapped in)."""

    users: np.ndarray  # [U] external user ids
    cand: np.ndarray  # [U, M] tokens, PAD where empty
    feats: np.ndarray  # [U, M, F] float32
    labels: np.ndarray  # [U, M] float32
    row: np.ndarray  # [U, M] frame row index, -1 where empty


def _pack(
    user_ids: np.ndarray,
    tokens: np.ndarray,
    feats: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    width: int | None = None,
    feat_rows: np.ndarray | None = None,
) -> _Lists:
    """Scatter rows (already ordered with each user's rows contiguous and in slot order) into [U, M].
    ``feat_rows``: row r's features are ``feats[feat_rows[r]]`` (a subset of a larger matrix, read in
    place instead of copied out first); default ``feats[r]``."""
    users, start, counts = np.unique(user_ids, return_index=True, return_counts=True)
    g = np.repeat(np.arange(len(users)), counts)
    order = np.argsort(user_ids, kind="stable")
    pos = np.arange(len(user_ids)) - np.repeat(np.cumsum(counts) - counts, counts)
    m = int(counts.max()) if width is None else width
    keep = pos < m
    g, pos, src = g[keep], pos[keep], order[keep]
    cand = np.zeros((len(users), m), dtype=np.int64)
    fx = np.zeros((len(users), m, feats.shape[1]), dtype=np.float32)
    lab = np.zeros((len(users), m), dtype=np.float32)
    rix = np.full((len(users), m), -1, dtype=np.int64)
    cand[g, pos], lab[g, pos], rix[g, pos] = tokens[src], labels[src], rows[src]
    fx[g, pos] = feats[src if feat_rows is None else feat_rows[src]]
    return _Lists(users, cand, fx, lab, rix)


class SequenceRanker:
    def __init__(self, params: SequenceRankerParams | None = None):
        self.params = params or SequenceRankerParams()
        self.net: _Net | None = None
        self.items: IdIndex | None = None
        self.feature_cols: list[str] = []
        self.feat_mean = np.zeros(0, np.float32)
        self.feat_std = np.ones(0, np.float32)
        self.best_epoch = 0
        self.valid_ndcg10 = float("nan")
        self.holdout_scores: pl.DataFrame | None = None  # user_id, item_id, label, score of the held-out valid users
        self.n_oof_users = 0  # labelled users scored out of fold beyond the early-stopping slice (oof_max_users)
        self.train_losses: list[float] = []
        self.valid_history: list[float] = []
        self.epoch_samples: list[int] = []
        self.n_valid_users = 0
        self.n_valid_scored = 0

    # ----- data -------------------------------------------------------------------------------
    def _tokens(self, item_ids) -> np.ndarray:
        pos = self.items.positions(item_ids).astype(np.int64)
        return np.where(pos >= 0, pos + N_SPECIAL, UNK)

    def _raw_features(self, frame: pl.DataFrame) -> np.ndarray:
        if not self.feature_cols:
            return np.zeros((frame.height, 0), dtype=np.float32)
        missing = [c for c in self.feature_cols if c not in frame.columns]
        if missing:
            raise ValueError(f"frame lacks feature columns {missing}")
        exprs = []
        for c in self.feature_cols:
            x = pl.col(c).cast(pl.Float64)
            # computed in float64, rounded to float32 per column (as numpy's astype rounds), so only one
            # float32 matrix is materialized, not a float64 frame, its numpy copy and then the float32 one
            exprs.append(((1.0 / x) if c.endswith("__rank") else x.sign() * x.abs().log1p()).cast(pl.Float32).fill_null(np.nan).alias(c))
        # writable: _standardised works in place, and one column comes back as a read-only view of polars' memory
        return frame.select(exprs).to_numpy(writable=True)

    def _features(self, frame: pl.DataFrame) -> np.ndarray:
        return self._standardised(self._raw_features(frame))

    def _standardised(self, raw: np.ndarray) -> np.ndarray:
        """(raw - mean) / std with non-finite values 0, float32, computed in ``raw``'s own memory (the
        same float32 operations, so the same bits, as out of place, without two more matrix copies)."""
        np.subtract(raw, self.feat_mean, out=raw)
        np.divide(raw, self.feat_std, out=raw)
        return np.nan_to_num(raw, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def _sequences(self, history: pl.DataFrame, users: np.ndarray) -> np.ndarray:
        """[U, max_len + 1] tokens: last distinct items, oldest first, right-aligned, then USER."""
        L = self.params.max_len
        seq = np.zeros((len(users), L + 1), dtype=np.int64)
        seq[:, L] = USER
        recent = _last_items(history.filter(pl.col("user_id").is_in(pl.Series(users).implode())), L)
        if recent.height:
            index = IdIndex(np.asarray(users, dtype=np.int64))
            u = index.positions(recent["user_id"])
            seq[u, L - recent["recency"].to_numpy()] = self._tokens(recent["item_id"])
        return seq

    def _lists(self, frame: pl.DataFrame, width: int | None = None) -> _Lists:
        labels = frame[LABEL].cast(pl.Float32).to_numpy() if LABEL in frame.columns else np.zeros(frame.height, np.float32)
        return _pack(
            frame["user_id"].to_numpy(),
            self._tokens(frame["item_id"]),
            self._features(frame),
            labels,
            np.arange(frame.height),
            width,
        )

    # ----- training ---------------------------------------------------------------------------
    def _build_vocab(self, frame: pl.DataFrame, history: pl.DataFrame, items: pl.DataFrame | None) -> tuple[np.ndarray, int]:
        parts = [frame["item_id"].cast(pl.Int64), history["item_id"].cast(pl.Int64)]
        if items is not None:
            parts.append(items["item_id"].cast(pl.Int64))
        # tokens numbered in item-id order: a seeded neural model, invariant to relabelling only within
        # its seed-to-seed spread (docs/evaluation.md, "Invariance tests"), like the embeddings' init
        self.items = IdIndex(np.unique(pl.concat(parts).to_numpy()))
        token_cat = np.zeros(len(self.items) + N_SPECIAL, dtype=np.int64)
        n_categories = 0
        if items is not None and "category_id" in items.columns:
            cats = (
                items.select(pl.col("item_id").cast(pl.Int64), pl.col("category_id").cast(pl.Utf8))
                .unique("item_id", keep="first")
                .drop_nulls()
            )
            vocab = cats["category_id"].unique().sort()
            codes = cats.join(pl.DataFrame({"category_id": vocab, "code": np.arange(1, len(vocab) + 1)}), on="category_id")
            token_cat[self._tokens(codes["item_id"])] = codes["code"].to_numpy()
            n_categories = len(vocab)
        return token_cat, n_categories

    def _sample(self, lists: _Lists, rng: np.random.Generator, users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices [U', M'] of ``users`` (list positions, default all): all positives
        then random negatives, PAD slots last."""
        users = np.arange(len(lists.users)) if users is None else users
        key = rng.random((len(users), lists.cand.shape[1]))
        key = np.where(lists.labels[users] > 0, key - 2.0, key)  # positives first, in random order
        key = np.where(lists.row[users] < 0, 3.0, key)  # empty slots last
        m = min(self.params.max_candidates, lists.cand.shape[1])
        cols = np.argsort(key, axis=1, kind="stable")[:, :m]
        return users[:, None], cols

    @staticmethod
    def _ndcg(lists: _Lists, scores: np.ndarray, k: int) -> float:
        present = lists.row.ravel() >= 0
        group = np.repeat(np.arange(len(lists.users)), lists.cand.shape[1])
        return grouped_ndcg_at_k(group[present], lists.labels.ravel()[present], scores.ravel()[present], k)

    @staticmethod
    def _take(lists: _Lists, users: np.ndarray) -> _Lists:
        return _Lists(lists.users[users], lists.cand[users], lists.feats[users], lists.labels[users], lists.row[users])

    def fit(
        self, frame: pl.DataFrame, history: pl.DataFrame, items: pl.DataFrame | None = None, *, runtime: TorchRuntime
    ) -> SequenceRanker:
        if LABEL not in frame.columns:
            raise ValueError("fit needs a 'label' column (build_ranker_frame(..., target=...))")
        p = self.params
        runtime.seed_everything()
        device = runtime.torch_device()
        frame = frame.filter((pl.col(LABEL) > 0).any().over("user_id")).sort("user_id", "item_id")
        if frame.height == 0:
            raise ValueError("no user in the frame has a positive label; nothing to learn")

        token_cat, n_categories = self._build_vocab(frame, history, items)
        self.feature_cols = list(p.feature_cols) if p.feature_cols is not None else default_feature_cols(frame)
        raw = self._raw_features(frame)
        with warnings.catch_warnings():
            # a column missing on every row (a channel with no candidate in this window) has no mean or spread:
            # numpy warns and returns NaN, which becomes mean 0 and scale 1 here (its values stay 0 after scaling)
            warnings.filterwarnings("ignore", "Mean of empty slice|Degrees of freedom", RuntimeWarning)
            self.feat_mean = np.nan_to_num(np.nanmean(raw, axis=0), nan=0.0).astype(np.float32) if raw.shape[1] else np.zeros(0, np.float32)
            std = np.nanstd(raw, axis=0) if raw.shape[1] else np.ones(0)
        self.feat_std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0).astype(np.float32)

        users = frame["user_id"].unique().sort().to_numpy()
        is_valid = holdout_users(users, p.valid_fraction, runtime.seed)
        use_valid = p.min_valid_users <= is_valid.sum() < len(users)
        if not use_valid:
            is_valid[:] = False

        self.net = _Net(len(token_cat), n_categories, len(self.feature_cols), p)
        self.net.token_cat.copy_(torch.from_numpy(token_cat))
        self.net.to(device)
        # The train and held-out lists come from one standardised matrix of the frame's rows, each picking its rows in
        # place: no train / valid frame copies, no second matrix (the frame is sorted by user, so each side's
        # rows stay contiguous per user and in item order). Memory: the frame, one float32 matrix, the lists.
        feats = self._standardised(raw)
        del raw
        user_col = frame["user_id"].to_numpy()
        tokens = self._tokens(frame["item_id"])
        labels = frame[LABEL].cast(pl.Float32).to_numpy()
        held_row = is_valid[np.searchsorted(users, user_col)]
        train_rows, valid_rows = np.flatnonzero(~held_row), np.flatnonzero(held_row)
        valid_keys = frame.select("user_id", "item_id", LABEL)[valid_rows]
        # out-of-fold scores for every labelled user (small frames only): the rows are kept for the extra fits
        oof = use_valid and len(users) <= p.oof_max_users
        kept = (users, user_col, tokens, feats, labels, frame.select("user_id", "item_id", LABEL), token_cat, n_categories) if oof else None
        del frame

        train_lists = _pack(
            user_col[train_rows], tokens[train_rows], feats, labels[train_rows], np.arange(len(train_rows)), feat_rows=train_rows
        )
        valid_lists = (
            _pack(user_col[valid_rows], tokens[valid_rows], feats, labels[valid_rows], np.arange(len(valid_rows)), feat_rows=valid_rows)
            if use_valid
            else None
        )
        del feats, user_col, tokens, labels
        train_seq = torch.from_numpy(self._sequences(history, train_lists.users))
        valid_seq = self._sequences(history, valid_lists.users) if use_valid else None
        # per-epoch early stopping reads a fixed seeded subset of the held-out users; all are scored once at the end
        self.n_valid_users = 0 if valid_lists is None else len(valid_lists.users)
        scored = capped_subset(self.n_valid_users, p.max_valid_users, runtime.seed)
        epoch_lists = valid_lists if len(scored) == self.n_valid_users else self._take(valid_lists, scored)
        epoch_seq = valid_seq if len(scored) == self.n_valid_users else valid_seq[scored]
        self.n_valid_scored = len(scored)
        n_train = len(train_lists.users)
        per_epoch = min(n_train, p.max_samples_per_epoch) if p.max_samples_per_epoch else n_train

        best_state, best_score, stale = None, -np.inf, 0
        self.train_losses, self.valid_history, self.epoch_samples, self.n_oof_users = [], [], [], 0
        runtime.log(
            f"sequence_ranker: {n_train} train users ({per_epoch} sampled per epoch), {self.n_valid_users} "
            f"valid users ({self.n_valid_scored} scored per epoch), {len(token_cat)} tokens, {len(self.feature_cols)} features, "
            f"device={device}"
        )

        def after_epoch(epoch: int, loss: float, n_users: int) -> bool:
            nonlocal best_state, best_score, stale
            self.train_losses.append(loss)
            self.epoch_samples.append(n_users)
            msg = f"sequence_ranker: epoch {epoch}/{p.epochs} ({n_users} users) loss {loss:.4f}"
            if use_valid:
                ndcg = self._ndcg(epoch_lists, self._score_lists(epoch_lists, epoch_seq, runtime), p.eval_at)
                self.valid_history.append(ndcg)
                msg += f" valid ndcg@{p.eval_at} {ndcg:.4f}"
                if ndcg > best_score:
                    best_score, stale, self.best_epoch = ndcg, 0, epoch
                    best_state = copy.deepcopy(self.net.state_dict())
                else:
                    stale += 1
            runtime.log(msg)
            return use_valid and stale >= p.patience

        self._epochs(self.net, train_lists, train_seq, p.epochs, runtime, after_epoch)
        if best_state is not None:
            self.net.load_state_dict(best_state)
            self.valid_ndcg10 = float(best_score)
            # the best epoch's scores of the held-out users: what the final-stage guard compares
            scores = self._score_lists(valid_lists, valid_seq, runtime)
            if self.n_valid_scored < self.n_valid_users:  # early stopping saw a sample: report all held-out users
                self.valid_ndcg10 = self._ndcg(valid_lists, scores, p.eval_at)
            held = np.full(valid_keys.height, -np.inf)
            present = valid_lists.row >= 0
            held[valid_lists.row[present]] = scores[present]
            self.holdout_scores = valid_keys.with_columns(pl.Series("score", held))
            if kept is not None:
                self.holdout_scores = pl.concat([self.holdout_scores, self._out_of_fold(kept, history, runtime)])
        else:
            self.best_epoch, self.valid_ndcg10 = len(self.train_losses), float("nan")
        self.net.eval()
        return self

    def _out_of_fold(self, kept: tuple, history: pl.DataFrame, runtime: TorchRuntime) -> pl.DataFrame:
        """user_id, item_id, label, score of every labelled user outside the early-stopping slice, out of fold: the same
        seeded hash cut into ceil(1 / valid_fraction) slices (``user_slices``; slice 0 is the early-stopping
        slice), each other slice scored by a fresh network trained on every other labelled user for the best
        epoch count. No user is scored by a network that saw its labels; the served network is not changed."""
        users, user_col, tokens, feats, labels, keys, token_cat, n_categories = kept
        p, device = self.params, runtime.torch_device()
        slices = user_slices(users, p.valid_fraction, runtime.seed)[np.searchsorted(users, user_col)]
        parts, self.n_oof_users = [], 0
        for part in range(1, int(slices.max()) + 1):
            out_rows, in_rows = np.flatnonzero(slices == part), np.flatnonzero(slices != part)
            if len(out_rows) == 0:
                continue
            fit_on = _pack(user_col[in_rows], tokens[in_rows], feats, labels[in_rows], np.arange(len(in_rows)), feat_rows=in_rows)
            scored = _pack(user_col[out_rows], tokens[out_rows], feats, labels[out_rows], np.arange(len(out_rows)), feat_rows=out_rows)
            net = _Net(len(token_cat), n_categories, len(self.feature_cols), p)
            net.token_cat.copy_(torch.from_numpy(token_cat))
            net.to(device)
            self._epochs(net, fit_on, torch.from_numpy(self._sequences(history, fit_on.users)), max(1, self.best_epoch), runtime)
            scores = self._score_lists(scored, self._sequences(history, scored.users), runtime, net=net)
            held = np.full(len(out_rows), -np.inf)
            present = scored.row >= 0
            held[scored.row[present]] = scores[present]
            parts.append(keys[out_rows].with_columns(pl.Series("score", held)))
            self.n_oof_users += len(scored.users)
        runtime.log(f"sequence_ranker: {self.n_oof_users} more labelled users scored out of fold ({len(parts)} networks)")
        return pl.concat(parts) if parts else keys.clear().with_columns(pl.Series("score", [], pl.Float64))

    def _epochs(self, net: _Net, lists: _Lists, seq: torch.Tensor, n_epochs: int, runtime: TorchRuntime, after_epoch=None) -> None:
        """Train ``net`` on ``lists`` (``seq``: their users' sequences) for up to ``n_epochs``: each epoch a seeded
        sample of users (``max_samples_per_epoch``) with freshly drawn negatives, listwise softmax loss.
        ``after_epoch(epoch, mean loss, users)`` returning True stops early."""
        p = self.params
        device = runtime.torch_device()
        opt = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        rng = np.random.default_rng(runtime.seed)
        n_train = len(lists.users)
        for epoch in range(1, n_epochs + 1):
            net.train()
            # this epoch's users: a seeded sample (the former full permutation when within the budget)
            order = epoch_sample(n_train, p.max_samples_per_epoch, runtime.generator(epoch))
            chosen = np.sort(order)
            ridx, cidx = self._sample(lists, rng, chosen)
            cand = torch.from_numpy(lists.cand[ridx, cidx])
            feats = torch.from_numpy(lists.feats[ridx, cidx])
            labels = torch.from_numpy(lists.labels[ridx, cidx])
            present = torch.from_numpy(lists.row[ridx, cidx] >= 0)
            users_seq = seq[torch.from_numpy(chosen)]
            perm = torch.from_numpy(np.searchsorted(chosen, order))  # batch order, as rows of the sample
            total, n = 0.0, 0
            for s in range(0, len(perm), p.batch_users):
                b = perm[s : s + p.batch_users]
                with runtime.autocast():
                    logits = net(users_seq[b].to(device), cand[b].to(device), feats[b].to(device)).float()
                mask = present[b].to(device)
                target = labels[b].to(device) * mask
                target = target / target.sum(-1, keepdim=True)
                logp = logits.masked_fill(~mask, float("-inf")).log_softmax(-1)
                loss = -(target * logp.masked_fill(~mask, 0.0)).sum(-1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                opt.step()
                total += float(loss.detach()) * len(b)
                n += len(b)
            if after_epoch is not None and after_epoch(epoch, total / n, len(order)):
                break

    # ----- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def _score_lists(self, lists: _Lists, seq: np.ndarray, runtime: TorchRuntime, net: _Net | None = None) -> np.ndarray:
        device = runtime.torch_device()
        net = self.net if net is None else net
        net.eval()
        out = np.zeros(lists.cand.shape, dtype=np.float64)
        for s in range(0, len(lists.users), self.params.predict_batch_users):
            sl = slice(s, s + self.params.predict_batch_users)
            with runtime.autocast():
                logits = net(
                    torch.from_numpy(seq[sl]).to(device),
                    torch.from_numpy(lists.cand[sl]).to(device),
                    torch.from_numpy(lists.feats[sl]).to(device),
                )
            out[sl] = logits.float().cpu().numpy()
        return out

    def predict(self, frame: pl.DataFrame, history: pl.DataFrame, runtime: TorchRuntime, width: int | None = None) -> np.ndarray:
        """One score per row of ``frame`` (frame order). ``history`` needs only the frame's users (each
        user's sequence reads that user's events alone). ``width``: the candidate-list width the lists are
        padded to (default: the frame's longest list); pass the longest list of the whole table when
        scoring it in blocks of users, so every block pads, and so computes, exactly as the whole."""
        if self.net is None:
            raise RuntimeError("SequenceRanker is not fitted")
        if frame.height == 0:
            return np.empty(0, dtype=np.float64)
        self.net.to(runtime.torch_device())
        lists = self._lists(frame, width)
        if width is not None and (lists.row >= 0).sum() < frame.height:
            raise ValueError(f"width {width} is shorter than a user's candidate list in the frame")
        scores = self._score_lists(lists, self._sequences(history, lists.users), runtime)
        out = np.empty(frame.height, dtype=np.float64)
        present = lists.row >= 0
        out[lists.row[present]] = scores[present]
        return out

    def recommend(
        self, frame: pl.DataFrame, history: pl.DataFrame, k: int, runtime: TorchRuntime, width: int | None = None
    ) -> pl.DataFrame:
        return rank_frame(frame, self.predict(frame, history, runtime, width), k)

    # ----- persistence ------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        if self.net is None:
            raise RuntimeError("SequenceRanker is not fitted")
        params = asdict(self.params)
        if params["feature_cols"] is not None:
            params["feature_cols"] = list(params["feature_cols"])
        payload = {
            "params": params,
            "state": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "item_ids": torch.from_numpy(self.items.ids.copy()),
            "n_categories": int(self.net.cat_emb.num_embeddings - 1),
            "feature_cols": list(self.feature_cols),
            "feat_mean": torch.from_numpy(self.feat_mean.copy()),
            "feat_std": torch.from_numpy(self.feat_std.copy()),
            "best_epoch": self.best_epoch,
            "valid_ndcg10": None if np.isnan(self.valid_ndcg10) else self.valid_ndcg10,
            "train_losses": list(self.train_losses),
            "valid_history": list(self.valid_history),
            "epoch_samples": list(self.epoch_samples),
            "n_valid_users": self.n_valid_users,
            "n_valid_scored": self.n_valid_scored,
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> SequenceRanker:
        payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        params = dict(payload["params"])
        if params["feature_cols"] is not None:
            params["feature_cols"] = tuple(params["feature_cols"])
        ranker = cls(SequenceRankerParams(**params))
        ranker.items = IdIndex(payload["item_ids"].numpy())
        ranker.feature_cols = list(payload["feature_cols"])
        ranker.feat_mean = payload["feat_mean"].numpy()
        ranker.feat_std = payload["feat_std"].numpy()
        ranker.net = _Net(len(ranker.items) + N_SPECIAL, payload["n_categories"], len(ranker.feature_cols), ranker.params)
        ranker.net.load_state_dict(payload["state"])
        ranker.net.eval()
        ranker.best_epoch = payload["best_epoch"]
        ranker.valid_ndcg10 = float("nan") if payload["valid_ndcg10"] is None else payload["valid_ndcg10"]
        ranker.train_losses = list(payload["train_losses"])
        ranker.valid_history = list(payload["valid_history"])
        ranker.epoch_samples = list(payload.get("epoch_samples", []))  # absent from models saved before budgets
        ranker.n_valid_users = payload.get("n_valid_users", 0)
        ranker.n_valid_scored = payload.get("n_valid_scored", 0)
        return ranker
