"""Transition-graph heuristic channel (stage ``tgh``), after "An Embarrassingly Simple Graph
Heuristic…": rings of a directed item transition graph around the user's last items.

API::

    TransitionGraphChannel(n_anchors=2, anchor_decay=0.5, edge_weight=0.5, ring2_weight=0.5,
                           max_successors=50, max_candidates=300, weights=None, batch_size=2048,
                           dense=False)
        .fit(history, items=None, runtime=None) -> self
        .recommend(user_ids, k, exclude_seen=True) -> pl.DataFrame(user_id, item_id, score, rank)
        .item_graph() -> pl.DataFrame(item_id, neighbour_id, score)    # the precomputed ring scores
        .transitions_  (n_items × n_items CSR of a -> b counts)

Graph.  History sorted by (user, ts, item); an edge a -> b for each pair of consecutive events of
the same user, and of the same session when ``session_id`` is set (a null session only chains to a
null session); self-loops (repeats) are dropped.  T[a, b] = number of such transitions.

Rings around an anchor a.  Ring 1 = direct successors {b : T[a, b] > 0}.  Ring 2 = successors of
ring-1 items (each item's ``max_successors`` strongest edges are expanded), path count
T2 = T_top · T_top, minus ring 1 and a itself.  Ring score of candidate c:

    ring 1:  sim(a, c) + edge_weight · log1p(T[a, c])  / max_c' log1p(T[a, c'])
    ring 2:  ring2_weight · (sim(a, c) + edge_weight · log1p(T2[a, c]) / max_c' log1p(T2[a, c']))

with sim(a, c) = cosine of the items' binary user columns (co-occurrence cosine, |U_a ∩ U_c| /
sqrt(|U_a| |U_c|)).  Each item keeps its ``max_candidates`` best ring candidates (item_graph()).

User score.  Anchors = the user's last ``n_anchors`` distinct items, the latest weighing 1 and each
earlier one ``anchor_decay`` times less; a candidate's ring score is summed over anchors.  Ring
candidates score 1 + that sum; every other item is filled by global popularity scaled to [0, 1),
so the rings always rank first and short rings are topped up by popular items.  Unknown users get
popularity alone.  Serving scores only each user's ring items and the first k + |seen| + |ring| items
of the popularity order (``_candidates``; everything else has that many items ahead of it), with the
dense block's scores and topk_rows's tie rule, so the lists equal the dense path's (``dense=True``).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.channels.base import IdIndex, batched, interaction_matrix, prefix_pairs
from recsys.channels.popularity import popularity_vector, ranked_order, recommend_dense, recommend_sparse, scaled
from recsys.schema import with_event_position


def _row_max_normalized_log1p(m: sp.csr_matrix) -> sp.csr_matrix:
    out = m.astype(np.float32, copy=True)
    out.data = np.log1p(out.data)
    row_max = out.max(axis=1).toarray().ravel()
    scale = np.repeat(1.0 / np.maximum(row_max, 1e-12), np.diff(out.indptr))
    out.data = (out.data * scale).astype(np.float32)
    return out


def _keep_top_per_row(m: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep each row's n largest entries (vectorized: sort by (row, -value), rank within row)."""
    m = m.tocsr()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((-m.data, rows))
    rank = np.arange(len(order)) - m.indptr[rows[order]]
    keep = order[rank < n]
    return sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape)


def _cosine_on_pattern(item_users: sp.csr_matrix, pattern: sp.coo_matrix, chunk: int = 200_000) -> np.ndarray:
    """Co-occurrence cosine for each (row, col) pair of ``pattern``, computed in chunks of pairs."""
    deg = np.diff(item_users.indptr).astype(np.float64)
    out = np.empty(pattern.nnz, np.float32)
    for s, e in batched(pattern.nnz, chunk):
        a, c = pattern.row[s:e], pattern.col[s:e]
        co = np.asarray(item_users[a].multiply(item_users[c]).sum(axis=1)).ravel()
        out[s:e] = co / np.sqrt(np.maximum(deg[a] * deg[c], 1.0))
    return out


class TransitionGraphChannel:
    name = "tgh"

    def __init__(
        self,
        n_anchors: int = 2,
        anchor_decay: float = 0.5,
        edge_weight: float = 0.5,
        ring2_weight: float = 0.5,
        max_successors: int = 50,
        max_candidates: int = 300,
        weights: dict[str, float] | None = None,
        batch_size: int = 2048,
        dense: bool = False,
    ):
        self.n_anchors = n_anchors
        self.anchor_decay = anchor_decay
        self.edge_weight = edge_weight
        self.ring2_weight = ring2_weight
        self.max_successors = max_successors
        self.max_candidates = max_candidates
        self.weights = weights
        self.batch_size = batch_size
        self.dense = dense  # True: score users x catalogue in dense blocks (the reference the sparse path equals)

    def fit(self, history: pl.DataFrame, items: pl.DataFrame | None = None, runtime=None) -> TransitionGraphChannel:
        self.items_ = IdIndex.from_values(history["item_id"])
        self.users_ = IdIndex.from_values(history["user_id"])
        n = len(self.items_)
        self.seen_ = interaction_matrix(history, self.users_, self.items_, self.weights, binary=True)
        self.pop_ = scaled(popularity_vector(history, self.items_, None, self.weights)) * np.float32(0.999)

        ordered = history.select("user_id", "item_id", "session_id", "ts", "seq").sort("user_id", "ts", "seq", maintain_order=True)
        pairs = ordered.with_columns(
            pl.col("item_id").shift(1).over("user_id").alias("prev_item"),
            pl.col("session_id").shift(1).over("user_id").alias("prev_session"),
            pl.col("user_id").shift(1).over("user_id").is_not_null().alias("has_prev"),
        ).filter(
            pl.col("has_prev")
            & (pl.col("item_id") != pl.col("prev_item"))
            & (
                (pl.col("session_id").is_null() & pl.col("prev_session").is_null())
                | (pl.col("session_id") == pl.col("prev_session")).fill_null(False)
            )
        )
        src = self.items_.positions(pairs["prev_item"])
        dst = self.items_.positions(pairs["item_id"])
        T = sp.csr_matrix((np.ones(len(src), np.float32), (src, dst)), shape=(n, n))
        T.sum_duplicates()
        self.transitions_ = T

        top = _keep_top_per_row(T, self.max_successors)
        T2 = (top @ top).tocsr()
        # ring 2 excludes the anchor itself and its ring-1 items
        T2 = T2 - T2.multiply(T.astype(bool)) - sp.diags(T2.diagonal())
        T2.eliminate_zeros()

        item_users = self.seen_.T.tocsr()
        E1 = _row_max_normalized_log1p(T).tocoo()
        E2 = _row_max_normalized_log1p(T2).tocoo()
        g1 = _cosine_on_pattern(item_users, E1) + self.edge_weight * E1.data
        g2 = self.ring2_weight * (_cosine_on_pattern(item_users, E2) + self.edge_weight * E2.data)
        G = sp.csr_matrix((np.r_[g1, g2], (np.r_[E1.row, E2.row], np.r_[E1.col, E2.col])), shape=(n, n))
        self.graph_ = _keep_top_per_row(G, self.max_candidates).astype(np.float32)

        # anchors: last n_anchors distinct items per user, latest first
        anchors = (
            with_event_position(history.select("user_id", "item_id", "ts", "seq"))
            .group_by("user_id", "item_id")
            .agg(pl.col("_pos").max())
            .sort(["user_id", "_pos"], descending=[False, True])
            .with_columns(pl.int_range(pl.len()).over("user_id").alias("back"))
            .filter(pl.col("back") < self.n_anchors)
        )
        w = (self.anchor_decay ** anchors["back"].to_numpy()).astype(np.float32)
        self.anchors_ = sp.csr_matrix(
            (w, (self.users_.positions(anchors["user_id"]), self.items_.positions(anchors["item_id"]))),
            shape=(len(self.users_), n),
        )
        if runtime is not None:
            runtime.log(f"tgh: {T.nnz} transition edges, {T2.nnz} ring-2 paths, graph nnz={self.graph_.nnz}")
        return self

    def _score_block(self, user_pos: np.ndarray) -> np.ndarray:
        ring = (self.anchors_[user_pos] @ self.graph_).toarray()
        return np.where(ring > 0, 1.0 + ring, self.pop_[None, :])

    def _candidates(self, user_pos: np.ndarray, k: int, seen_rows: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, item, score) pairs holding each user's top-k, scores as _score_block has them: the ring
        items (1 + ring > 1 > every pop fill) and the first k + |seen| + |ring| items of the popularity
        order (whatever is past them has that many items ahead of it). An item in both keeps its ring score."""
        ring = (self.anchors_[user_pos] @ self.graph_).tocoo()
        on = ring.data > 0
        r_rows, r_cols, r_scores = ring.row[on], ring.col[on], 1.0 + ring.data[on]
        n_ring = np.bincount(r_rows, minlength=len(user_pos))
        n_seen = np.diff(seen_rows.indptr) if seen_rows is not None else 0
        if getattr(self, "pop_order_", None) is None:
            self.pop_order_ = ranked_order(self.pop_)
        f_rows, f_cols = prefix_pairs(self.pop_order_, np.minimum(k + n_seen + n_ring, len(self.items_)))
        return (
            np.concatenate([r_rows, f_rows]),
            np.concatenate([r_cols, f_cols]),
            np.concatenate([r_scores.astype(np.float32), self.pop_[f_cols]]),
        )

    def recommend(self, user_ids, k: int, exclude_seen: bool = True) -> pl.DataFrame:
        return (recommend_dense if self.dense else recommend_sparse)(
            user_ids,
            k,
            self.users_,
            self.items_,
            self._score_block if self.dense else self._candidates,
            self.seen_ if exclude_seen else None,
            self.pop_,
            self.batch_size,
        )

    def item_graph(self) -> pl.DataFrame:
        g = self.graph_.tocoo()
        return pl.DataFrame(
            {
                "item_id": self.items_.ids[g.row],
                "neighbour_id": self.items_.ids[g.col],
                "score": g.data.astype(np.float64),
            }
        ).sort(["item_id", "score"], descending=[False, True])
