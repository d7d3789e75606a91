"""Training data and loop for the PRS model, shaped like serving.

API::

    data = PRSData(cooc, swing_at, categories, user_codes, log, n_triggers, seq_len, own=own, swing_count_at=cnt)
    ex = training_examples(data, max_examples=500_000, rng=rng)   # Examples: one row per target event
    cands = sample_candidates(rng, data, ex, n_negatives, hard=0.5)   # target first, then pool negatives
    batch = pair_batch(data, ex.user, ex.end, ex.trig, ex.trig_pos, cands, loo=True, n_neg=n_negatives, hard=0.5)
    logits = pooled_logits(model, batch, device)                  # [B, C]: one score per (user, candidate)
    q, cand, logit, cooc = pool_scores(model, data, user, end, trig, trig_pos, device, runtime)  # serving form
    report = train_prs(model, data, ex, runtime, epochs=4, n_negatives=16, max_train_per_epoch=8_000, ...)

Examples. One per target event of a user (its global log position ``end``): the triggers are
exactly what serving would use if the log stopped just before the target (features.triggers_at:
the user's last ``n_triggers`` distinct items, their recency ranks, their last-touch times; the
time gap runs from a trigger's last touch to the user's latest event before the target; the
behaviour sequence stops before the target). Targets the user already had are skipped (serving
excludes seen items), and an example is kept when at least one trigger's relaxed list holds the
target with some support left once the user's own contribution is removed (``loo``): what the
index could not reach at serving is not trained on.

Leave-one-out (recsys.pi2i.loo): every (trigger, candidate) pair of an example is featurized
without the user's own co-occurrence and Swing contribution, and a pair left with no support is
dropped, as it would be absent from the index at serving.

The score and the loss. PRS gives a logit per (user, trigger, candidate) pair; a candidate's score
is the log-sum-exp of its pair logits over the triggers whose lists hold it (``pooled_logits``,
``pool_scores``); serving ranks by exactly this. The loss is the softmax cross-entropy of the true
target against ``n_negatives`` candidates drawn from the union of the triggers' lists (seen items
and the target itself masked). A uniform draw picks a slot uniformly among all the lists' slots
(a candidate in m lists: probability ∝ m); a share ``hard_negatives`` of the draws picks a slot
∝ its co-occurrence score instead (closer to the model's ranking, so the loss sees the hard
competitors). The sampled-softmax correction subtracts the log expected count of every candidate
under that mixture from its score (Jean et al. 2015).

Cost control: each epoch trains on a fresh random sample of at most ``max_train_per_epoch``
examples; the example builder samples at most ``max_examples`` target events of a long log.
A batch packs each example's present (trigger, candidate) pairs into rows of PACK_WIDTH that
share the user's behaviour sequence (the model takes one trigger per pair), so the cost is the
number of pairs present, not n_triggers × candidates.

Validation: a held-out random ``val_fraction`` of the examples, at most ``max_val``, fixed for the
whole fit; each is scored in the serving form over its whole pool (every slot of every trigger,
with leave-one-out features), and ``hit@val_k`` of the target is reported next to the hit rate of
the co-occurrence order of the same pool (Σ over triggers of 0.8^r × leave-one-out cooc score, the
pi2i_index ranking). The weights of the best validation epoch are kept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from recsys.channels.itemcf import ItemIndex
from recsys.pi2i.features import EventLog, cross_features, sequences, triggers_at
from recsys.pi2i.loo import OwnCooc, list_rank_keys, loo_adjust
from recsys.pi2i.model import PRSModel

COOC_ORDER_DECAY = 0.8  # recency decay of the co-occurrence order baseline (PI2IIndexChannel's default)
_MASKED = -1e9
PACK_WIDTH = 24  # pairs per packed row; an example's pairs fill ⌈pairs / 24⌉ rows sharing its sequence


@dataclass
class PRSData:
    """Everything needed to featurize (user, trigger, target) pairs, at training and serving."""

    cooc: ItemIndex
    swing_at: np.ndarray | None  # float32 [n_items, D], Swing score per cooc slot, -1 = absent
    categories: np.ndarray  # int32 [n_items]
    user_codes: np.ndarray  # int32 [n_users, F]
    log: EventLog
    n_triggers: int
    seq_len: int
    own: OwnCooc | None = None  # users' own basket cells, for leave-one-out features (training only)
    swing_count_at: np.ndarray | None = None  # float32 [n_items, D], Swing support per cooc slot
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def links(self) -> tuple[np.ndarray, np.ndarray]:
        if "links" not in self._cache:
            self._cache["links"] = self.log.same_item_links()
        return self._cache["links"]

    def first_seen(self, user, item) -> np.ndarray:
        """Global log position of the user's first event of ``item`` (int64 max when never)."""
        if "first" not in self._cache:
            prev = self.links()[0]
            first = np.flatnonzero(prev < 0)
            keys = self.log.user_of()[first].astype(np.int64) * len(self.log.items) + self.log.item_pos[first]
            order = np.argsort(keys, kind="stable")
            self._cache["first"] = (keys[order], first[order])
        keys, pos = self._cache["first"]
        q = np.asarray(user, np.int64) * len(self.log.items) + np.asarray(item, np.int64)
        if len(keys) == 0:
            return np.full(q.shape, np.iinfo(np.int64).max)
        at = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
        return np.where(keys[at] == q, pos[at], np.iinfo(np.int64).max)

    def row_score_sums(self) -> np.ndarray:
        if "row_sums" not in self._cache:
            self._cache["row_sums"] = self.cooc.scores.astype(np.float64).sum(axis=1)
        return self._cache["row_sums"]

    def rank_keys(self) -> np.ndarray:
        if "rank_keys" not in self._cache:
            self._cache["rank_keys"] = list_rank_keys(self.cooc)
        return self._cache["rank_keys"]

    def loo(self, user, trig, tgt, slot):
        return loo_adjust(self.own, self.cooc, self.rank_keys(), self.swing_at, self.swing_count_at, user, trig, tgt, slot)


@dataclass
class Examples:
    user: np.ndarray  # int32 [N]
    end: np.ndarray  # int64 [N], global log position of the target (inputs stop before it)
    target: np.ndarray  # int32 [N], item position
    trig: np.ndarray  # int32 [N, T], trigger items, most recent first, -1 = none
    trig_pos: np.ndarray  # int64 [N, T], log position of each trigger's last touch before ``end``

    def __len__(self) -> int:
        return len(self.user)

    def take(self, idx: np.ndarray) -> Examples:
        return Examples(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    def gap_us(self, log: EventLog) -> np.ndarray:
        """[N, T] µs from each trigger's last touch to the user's latest event before the target."""
        return gap_us(log, self.end, self.trig_pos)


def gap_us(log: EventLog, end: np.ndarray, trig_pos: np.ndarray) -> np.ndarray:
    ref = log.t[np.asarray(end, np.int64) - 1]
    return np.where(trig_pos >= 0, ref[:, None] - log.t[np.maximum(trig_pos, 0)], 0).astype(np.int64)


def _target_pairs(data: PRSData, user, trig, target, loo: bool) -> np.ndarray:
    """[N, T] bool: trigger t's list holds the target (with support left once the user is removed)."""
    ok = trig >= 0
    tg = np.broadcast_to(np.asarray(target)[:, None], trig.shape)
    _, _, slot = data.cooc.lookup(np.where(ok, trig, 0).ravel(), tg.ravel())
    slot = slot.reshape(trig.shape)
    present = ok & (slot < data.cooc.depth)
    if loo and data.own is not None:
        r, c = np.nonzero(present)
        adj = data.loo(np.asarray(user)[r], trig[r, c], tg[r, c], slot[r, c])
        present[r[adj.count <= 0], c[adj.count <= 0]] = False
    return present


def training_examples(
    data: PRSData, max_examples: int | None = 500_000, rng: np.random.Generator | None = None, loo: bool = True
) -> Examples:
    """One example per target event, shaped like serving (module docstring)."""
    log, t_n = data.log, data.n_triggers
    prev, nxt = data.links()
    user = log.user_of()
    pos = np.arange(len(log.item_pos), dtype=np.int64)
    cand = pos[(pos > log.indptr[user]) & (prev < 0)]  # some history before it; the item is new to the user
    if max_examples and len(cand) > max_examples:
        rng = rng or np.random.default_rng(0)
        cand = np.sort(rng.choice(cand, int(max_examples), replace=False))
    trig, trig_pos = triggers_at(log, user[cand], cand, t_n, nxt)
    target = log.item_pos[cand]
    keep = _target_pairs(data, user[cand], trig, target, loo).any(axis=1)
    return Examples(user[cand][keep].astype(np.int32), cand[keep], target[keep].astype(np.int32), trig[keep], trig_pos[keep])


def sample_candidates(rng: np.random.Generator, data: PRSData, ex: Examples, n_neg: int, hard: float = 0.0) -> np.ndarray:
    """[B, 1 + n_neg] item positions: the target, then negatives from the union of the triggers' lists.

    ``n_neg - round(hard * n_neg)`` draws pick a slot uniformly among all the lists' slots (a
    candidate in m lists: probability ∝ m); the other ``round(hard * n_neg)`` pick a slot with
    probability ∝ its co-occurrence score (a candidate: ∝ Σ of its scores over the lists), a
    proposal closer to the model's own ranking, so the sampled loss sees the competitors that
    decide the top of the list. ``pair_batch(..., n_neg, hard)`` gives the matching log expected
    counts.
    """
    n_hard = int(round(hard * n_neg))
    n_uni = n_neg - n_hard
    rows = np.arange(len(ex))[:, None]
    parts = [ex.target[:, None].astype(np.int64)]
    trig = np.maximum(ex.trig, 0)
    if n_uni:
        lengths = data.cooc.list_lengths()
        lens = np.where(ex.trig >= 0, lengths[trig], 0).astype(np.int64)
        cum = np.cumsum(lens, axis=1)
        total = np.maximum(cum[:, -1], 1)
        r = np.floor(rng.random((len(ex), n_uni)) * total[:, None]).astype(np.int64)
        t = np.minimum((r[:, :, None] >= cum[:, None, :]).sum(axis=2), lens.shape[1] - 1)
        slot = r - (cum - lens)[rows, t]
        parts.append(data.cooc.targets[trig[rows, t], np.clip(slot, 0, data.cooc.depth - 1)].astype(np.int64))
    if n_hard:
        d = data.cooc.depth
        w = np.where((ex.trig >= 0)[:, :, None], data.cooc.scores[trig], 0.0).reshape(len(ex), -1).astype(np.float64)
        cum = np.cumsum(w, axis=1)
        total = cum[:, -1]
        off = np.cumsum(total) - total
        u = rng.random((len(ex), n_hard)) * total[:, None] + off[:, None]
        idx = np.searchsorted((cum + off[:, None]).ravel(), u.ravel(), side="right").reshape(u.shape) - rows * w.shape[1]
        idx = np.clip(idx, 0, w.shape[1] - 1)
        parts.append(data.cooc.targets[trig[rows, idx // d], idx % d].astype(np.int64))
    return np.concatenate(parts, axis=1)


def pair_batch(data: PRSData, user, end, trig, trig_pos, cands, loo: bool = True, n_neg: int | None = None, hard: float = 0.0) -> dict:
    """The (trigger, candidate) pairs of B examples, packed one example per row (numpy arrays).

    ``cands`` [B, C] item positions (-1 = none). A pair exists where the trigger's list holds the
    candidate; candidates the user had before ``end`` and repeats of the first candidate are
    masked. Pairs are packed PACK_WIDTH to a row, rows of one example reading its sequence.
    Returns trig/cands (+1, 0 = pad) [R, W], cross [R, W, X], valid [R, W], pool ((b * C + c) *
    T + t, pad → B * C * T) [R, W], example_seq [R], user_codes [R, F], seq [B, L], log_q [B, C]
    (log expected count of each candidate under ``sample_candidates(n_neg, hard)``, full index:
    the sampled-softmax correction), cand_ok [B, C], and the flat pairs (b, t, c, slot, cross).
    """
    user = np.asarray(user, np.int64)
    end = np.asarray(end, np.int64)
    cands = np.asarray(cands, np.int64)
    b_n, t_n = trig.shape
    c_n = cands.shape[1]
    depth = data.cooc.depth
    tr = np.broadcast_to(trig[:, :, None], (b_n, t_n, c_n))
    ca = np.broadcast_to(cands[:, None, :], (b_n, t_n, c_n))
    ok = (tr >= 0) & (ca >= 0)
    _, _, slot = data.cooc.lookup(np.where(ok, tr, 0).ravel(), np.where(ok, ca, 0).ravel())
    slot = slot.reshape(b_n, t_n, c_n)
    present = ok & (slot < depth)
    mult = present.sum(axis=1)
    # Log expected count of each candidate under sample_candidates' draws (the sampled-softmax correction).
    n_neg = c_n - 1 if n_neg is None else n_neg
    n_hard = int(round(hard * n_neg))
    lens = np.where(trig >= 0, data.cooc.list_lengths()[np.maximum(trig, 0)], 0).sum(axis=1)
    expected = (n_neg - n_hard) * mult / np.maximum(lens, 1)[:, None]
    if n_hard:
        sc = np.where(present, data.cooc.scores[np.where(ok, tr, 0), np.minimum(slot, depth - 1)], 0.0).sum(axis=1)
        tot = np.where(trig >= 0, data.row_score_sums()[np.maximum(trig, 0)], 0.0).sum(axis=1)
        expected = expected + n_hard * sc / np.maximum(tot, 1e-12)[:, None]
    cand_ok = (cands >= 0) & (data.first_seen(user[:, None], np.maximum(cands, 0)) >= end[:, None])
    cand_ok[:, 1:] &= cands[:, 1:] != cands[:, :1]
    present &= cand_ok[:, None, :]
    b, t, c = np.nonzero(present)
    p_trig, p_tgt, p_slot = trig[b, t].astype(np.int64), cands[b, c], slot[b, t, c].astype(np.int64)
    adj = None
    if loo and data.own is not None:
        adj = data.loo(user[b], p_trig, p_tgt, p_slot)
        keep = adj.count > 0
        b, t, c, p_trig, p_tgt, p_slot = b[keep], t[keep], c[keep], p_trig[keep], p_tgt[keep], p_slot[keep]
        adj = type(adj)(adj.score[keep], adj.count[keep], adj.rank[keep], None if adj.swing is None else adj.swing[keep])
    gaps = gap_us(data.log, end, trig_pos)[b, t]
    cross = cross_features(data.cooc, data.swing_at, data.categories, p_trig, p_tgt, p_slot, gaps, t, data.n_triggers, loo=adj)
    # Pack each example's pairs into rows of PACK_WIDTH that read the example's sequence.
    per_ex = np.bincount(b, minlength=b_n)
    rows_per_ex = -(-per_ex // PACK_WIDTH)
    row0 = np.cumsum(rows_per_ex) - rows_per_ex
    within = np.arange(len(b)) - (np.cumsum(per_ex) - per_ex)[b]
    row, col = row0[b] + within // PACK_WIDTH, within % PACK_WIDTH
    n_rows = max(int(rows_per_ex.sum()), 1)
    out_trig = np.zeros((n_rows, PACK_WIDTH), np.int64)
    out_cand = np.zeros((n_rows, PACK_WIDTH), np.int64)
    out_cross = np.zeros((n_rows, PACK_WIDTH, cross.shape[-1]), np.float32)
    pool = np.full((n_rows, PACK_WIDTH), b_n * c_n * t_n, np.int64)
    valid = np.zeros((n_rows, PACK_WIDTH), bool)
    example = np.zeros(n_rows, np.int64)
    example[: int(rows_per_ex.sum())] = np.repeat(np.arange(b_n), rows_per_ex)
    out_trig[row, col], out_cand[row, col], out_cross[row, col] = p_trig + 1, p_tgt + 1, cross
    pool[row, col], valid[row, col] = (b * c_n + c) * t_n + t, True
    return {
        "user_codes": data.user_codes[user[example]],
        "trig": out_trig,
        "cands": out_cand,
        "cross": out_cross,
        "seq": sequences(data.log, user, end, data.seq_len),
        "example_seq": example,
        "valid": valid,
        "pool": pool,
        "log_q": np.log(np.maximum(expected, 1e-12)).astype(np.float32),
        "cand_ok": cand_ok,
        "shape": (b_n, c_n, t_n),
        "pairs": (b, t, c, p_slot, cross),
    }


def pooled_logits(model: PRSModel, batch: dict, device) -> torch.Tensor:
    """[B, C] candidate scores: log-sum-exp over triggers of the pair logits (-1e9 where no pair)."""
    b_n, c_n, t_n = batch["shape"]
    as_t = lambda a, dt=torch.long: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dt)  # noqa: E731
    logits = model(
        as_t(batch["user_codes"]),
        as_t(batch["trig"]),
        as_t(batch["cands"]),
        as_t(batch["cross"], torch.float32),
        as_t(batch["seq"]),
        example_seq=as_t(batch["example_seq"]),
    ).float()
    logits = logits.masked_fill(~as_t(batch["valid"], torch.bool), _MASKED)
    grid = torch.full((b_n * c_n * t_n + 1,), _MASKED, dtype=logits.dtype, device=logits.device)
    grid = grid.scatter(0, as_t(batch["pool"]).view(-1), logits.view(-1))
    pooled = torch.logsumexp(grid[:-1].view(b_n, c_n, t_n), dim=2)
    return pooled.masked_fill(~as_t(batch["cand_ok"], torch.bool), _MASKED)


def featurize(
    data: PRSData, user, trig, slots, gap_us, recency, seq: np.ndarray, device, example_seq: np.ndarray | None = None, loo=None
) -> dict:
    """Tensors for PRSModel.forward, one trigger per row; ``slots`` [B, C] are positions in each trigger's cooc list.

    ``example_seq`` (optional, [B]): row of ``seq`` each example reads (sequences shared by rows).
    ``loo`` (optional, [B] users): leave-one-out features for these users; slots left with no
    support become invalid.
    """
    trig = np.asarray(trig, np.int64)
    slots = np.asarray(slots, np.int64)
    cands = data.cooc.targets[trig[:, None], slots]
    valid = cands >= 0
    adj = None
    if loo is not None and data.own is not None:
        r, c = np.nonzero(valid)
        flat = data.loo(np.asarray(loo, np.int64)[r], trig[r], cands[r, c], slots[r, c])
        adj = type(flat)(
            *(np.zeros(slots.shape, a.dtype) if a is not None else None for a in (flat.score, flat.count, flat.rank, flat.swing))
        )
        adj.score[r, c], adj.count[r, c], adj.rank[r, c] = flat.score, flat.count, flat.rank
        if adj.swing is not None:
            adj.swing[...] = -1.0
            adj.swing[r, c] = flat.swing
        valid &= adj.count > 0
    cross = cross_features(data.cooc, data.swing_at, data.categories, trig, cands, slots, gap_us, recency, data.n_triggers, loo=adj)
    as_t = lambda a, dt=torch.long: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dt)  # noqa: E731
    batch = {
        "user_codes": as_t(data.user_codes[np.asarray(user, np.int64)]),
        "trig": as_t(trig + 1),
        "cands": as_t(cands + 1),  # empty slots (-1) become 0, the padding item
        "cross": as_t(cross, torch.float32),
        "seq": as_t(seq),
        "valid": as_t(valid, torch.bool),
    }
    if example_seq is not None:
        batch["example_seq"] = as_t(example_seq)
    return batch


def _forward(model: PRSModel, batch: dict) -> torch.Tensor:
    logits = model(batch["user_codes"], batch["trig"], batch["cands"], batch["cross"], batch["seq"], example_seq=batch.get("example_seq"))
    return logits.float().masked_fill(~batch["valid"], float("-inf"))


def _reduce(keys: np.ndarray, *vals_how) -> tuple:
    """Group equal int64 keys; each (values, "lse" | "sum") is reduced per group. Returns (keys, reduced...)."""
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.empty(0, np.int64)
    out = [keys[starts]]
    for vals, how in vals_how:
        v = vals[order].astype(np.float64)
        if not len(v):
            out.append(v)
        elif how == "sum":
            out.append(np.add.reduceat(v, starts))
        else:
            top = np.maximum.reduceat(v, starts)
            out.append(top + np.log(np.add.reduceat(np.exp(v - np.repeat(top, np.diff(np.r_[starts, len(v)]))), starts)))
    return tuple(out)


def pool_scores(
    model: PRSModel,
    data: PRSData,
    user,
    end,
    trig,
    trig_pos,
    device,
    runtime,
    loo: bool = False,
    exclude_seen: bool = True,
    batch_pairs: int = 131_072,
):
    """The serving score of every candidate of Q queries (user, end, triggers).

    Each trigger's whole list is scored by PRS; a candidate's score is the log-sum-exp of its pair
    logits over the triggers that reach it. Returns (query int64, candidate int64, logit float64,
    cooc float64) per distinct (query, candidate), where ``cooc`` is the co-occurrence order
    Σ 0.8^r × cooc score. ``exclude_seen`` drops the items the user had before ``end``.
    """
    user = np.asarray(user, np.int64)
    end = np.asarray(end, np.int64)
    lengths = data.cooc.list_lengths()
    q, t = np.nonzero((trig >= 0) & (lengths[np.maximum(trig, 0)] > 0))
    t_item = trig[q, t].astype(np.int64)
    gaps = gap_us(data.log, end, trig_pos)[q, t]
    d = data.cooc.depth
    per_batch = max(1, batch_pairs // d)
    qs, cs, ls, cos = [], [], [], []
    model.to(device).eval()
    with torch.no_grad(), runtime.autocast():
        for a in range(0, len(q), per_batch):
            s = slice(a, a + per_batch)
            slots = np.broadcast_to(np.arange(d), (len(q[s]), d))
            # One behaviour sequence (and its attention keys) per query, shared by its triggers.
            seq_q, example_seq = np.unique(q[s], return_inverse=True)
            seq = sequences(data.log, user[seq_q], end[seq_q], data.seq_len)
            batch = featurize(data, user[q[s]], t_item[s], slots, gaps[s], t[s], seq, device, example_seq, loo=user[q[s]] if loo else None)
            logits = _forward(model, batch).cpu().numpy()
            valid = batch["valid"].cpu().numpy()
            cooc_score = batch["cross"][..., 0].cpu().numpy()
            r_idx, c_idx = np.nonzero(valid)
            qs.append(q[s][r_idx])
            cs.append(data.cooc.targets[t_item[s][r_idx], c_idx].astype(np.int64))
            ls.append(logits[r_idx, c_idx])
            cos.append(cooc_score[r_idx, c_idx] * COOC_ORDER_DECAY ** t[s][r_idx])
    if not qs:
        e = np.empty(0)
        return e.astype(np.int64), e.astype(np.int64), e, e
    qq, cc, ll, co = np.concatenate(qs), np.concatenate(cs), np.concatenate(ls), np.concatenate(cos)
    if exclude_seen:
        ok = data.first_seen(user[qq], cc) >= end[qq]
        qq, cc, ll, co = qq[ok], cc[ok], ll[ok], co[ok]
    n = len(data.log.items)
    keys, logit, cooc = _reduce(qq * n + cc, (ll, "lse"), (co, "sum"))
    return keys // n, keys % n, logit, cooc


def rank_of_targets(query: np.ndarray, cand: np.ndarray, score: np.ndarray, n_queries: int, target: np.ndarray) -> np.ndarray:
    """0-based rank of each query's target among its candidates (ties count against it); -1 when absent."""
    n = int(max(cand.max(initial=0), np.max(target, initial=0))) + 1
    keys = query * n + cand
    order = np.argsort(keys, kind="stable")
    tk = np.arange(n_queries, dtype=np.int64) * n + np.asarray(target, np.int64)
    at = np.clip(np.searchsorted(keys[order], tk), 0, max(len(keys) - 1, 0))
    found = (keys[order][at] == tk) if len(keys) else np.zeros(n_queries, bool)
    t_score = np.where(found, score[order][at] if len(keys) else 0.0, np.inf)
    above = (score >= t_score[query]) & (cand != np.asarray(target)[query])
    rank = np.bincount(query[above], minlength=n_queries)
    return np.where(found, rank, -1)


def evaluate_pool(model: PRSModel, data: PRSData, ex: Examples, ks, device, runtime) -> dict:
    """hit@k over held-out examples, each ranked over its whole pool (serving form, leave-one-out features)."""
    if len(ex) == 0:
        return {f"{w}@{k}": float("nan") for k in ks for w in ("prs", "cooc")}
    q, c, logit, cooc = pool_scores(model, data, ex.user, ex.end, ex.trig, ex.trig_pos, device, runtime, loo=True)
    out = {}
    for name, score in (("prs", logit), ("cooc", cooc)):
        rank = rank_of_targets(q, c, score, len(ex), ex.target)
        for k in ks:
            out[f"{name}@{k}"] = float(np.mean((rank >= 0) & (rank < k)))
    return out


def _optimizer(model: PRSModel, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # The fused kernel is one call per step instead of a dozen per tensor: ~50x faster steps on CPU.
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def train_prs(
    model: PRSModel,
    data: PRSData,
    examples: Examples,
    runtime,
    *,
    epochs: int = 4,
    batch_size: int = 512,
    lr: float = 2e-3,
    weight_decay: float = 1e-5,
    n_negatives: int = 16,
    hard_negatives: float = 0.0,
    max_train_per_epoch: int | None = 8_000,
    val_fraction: float = 0.1,
    val_k: int = 10,
    max_val: int = 1_000,
    loo: bool = True,
    evaluate_start: bool = True,
) -> dict:
    """Train in place; returns {"epochs": [{epoch, loss, val_hit, cooc_hit}], "best_epoch", "n_train", "n_val", ...}."""
    runtime.seed_everything()
    device = runtime.torch_device()
    model.to(device)
    rng = np.random.default_rng(runtime.seed)
    n = len(examples)
    if n < 2:
        raise ValueError(f"PRS needs training examples whose target is inside the relaxed index; got {n}")
    perm = rng.permutation(n)
    n_val = min(max_val, int(round(n * val_fraction)))
    val, train = examples.take(np.sort(perm[:n_val])), examples.take(perm[n_val:])
    per_epoch = len(train) if not max_train_per_epoch else min(len(train), int(max_train_per_epoch))
    optim = _optimizer(model, lr, weight_decay)
    runtime.log(
        f"prs: {len(train)} training examples ({per_epoch} sampled per epoch), {n_val} validation examples, "
        f"{data.n_triggers} triggers, list depth {data.cooc.depth}, leave-one-out {bool(loo and data.own is not None)}"
    )
    history, best, best_state, best_epoch = [], -1.0, None, 0
    if n_val and evaluate_start:
        # Epoch 0: the starting point (the co-occurrence order when PI2I starts the model there)
        # competes too, so a fit that never beats it keeps it.
        hits = evaluate_pool(model, data, val, (val_k,), device, runtime)
        best, best_state = hits[f"prs@{val_k}"], copy.deepcopy(model.state_dict())
        history.append({"epoch": 0, "loss": None, "val_hit": best, "cooc_hit": hits[f"cooc@{val_k}"], "pairs": 0})
        runtime.log(f"prs start: val hit@{val_k} {best:.4f} (cooc order {hits[f'cooc@{val_k}']:.4f})")
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(train))[:per_epoch]
        total, seen, pairs = 0.0, 0, 0
        for a in range(0, len(order), batch_size):
            part = train.take(order[a : a + batch_size])
            cands = sample_candidates(rng, data, part, n_negatives, hard_negatives)
            batch = pair_batch(data, part.user, part.end, part.trig, part.trig_pos, cands, loo=loo, n_neg=n_negatives, hard=hard_negatives)
            with runtime.autocast():
                pooled = pooled_logits(model, batch, device)
            pooled = pooled - torch.from_numpy(batch["log_q"]).to(device)
            loss = F.cross_entropy(pooled, torch.zeros(len(part), dtype=torch.long, device=device))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            total += float(loss.detach()) * len(part)
            seen += len(part)
            pairs += int(batch["valid"].sum())
        hits = evaluate_pool(model, data, val, (val_k,), device, runtime) if n_val else {}
        val_hit, cooc_hit = hits.get(f"prs@{val_k}", float("nan")), hits.get(f"cooc@{val_k}", float("nan"))
        history.append({"epoch": epoch, "loss": total / max(seen, 1), "val_hit": val_hit, "cooc_hit": cooc_hit, "pairs": pairs})
        runtime.log(
            f"prs epoch {epoch}/{epochs} loss {total / max(seen, 1):.4f} val hit@{val_k} {val_hit:.4f} "
            f"(cooc order {cooc_hit:.4f}), {pairs / max(seen, 1):.1f} pairs per example"
        )
        if not n_val or val_hit > best:  # ties keep the earlier (simpler) state
            best, best_state = val_hit, copy.deepcopy(model.state_dict())
            best_epoch = epoch
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"epochs": history, "best_epoch": best_epoch, "n_train": len(train), "n_val": n_val, "n_train_per_epoch": per_epoch}


def cooc_order_start(n_triggers: int) -> dict[int, float]:
    """Wide weights that make the pooled score the co-occurrence order: log score + r log 0.8."""
    from recsys.pi2i.features import CROSS_FEATURES

    return {
        CROSS_FEATURES.index("log_cooc_score"): 1.0,
        CROSS_FEATURES.index("trigger_recency_frac"): n_triggers * float(np.log(COOC_ORDER_DECAY)),
    }
