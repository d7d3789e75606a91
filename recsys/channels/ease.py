"""EASE channel (stage ``ease``): Steck, "Embarrassingly Shallow Autoencoders for Sparse Data" (WWW 2019).

API::

    EASEChannel(l2=250.0, binary=True, dtype="float64", max_items=8_000, weights=None, batch_size=1024)
        .fit(history, items=None, runtime=None) -> self
        .recommend(user_ids, k, exclude_seen=True) -> pl.DataFrame(user_id, item_id, score, rank)
        .B_  (n_head_items × n_head_items item-item weights, zero diagonal)
        .mode_ ("full" | "head"), .n_items_, .n_head_items_, .head_interaction_share_, .fit_info()
        .fit_settings(make_channel, settings, history) -> iterator of (setting, fitted channel),
            one Gram matrix for every λ (the valid-fold search, recsys/channels/search.py)
    head_positions(history, items, n) -> (dense positions of the head, training rows per item)

Closed form: P = (XᵀX + λI)⁻¹, B = I − P·diag(1/diag(P)), diag(B) = 0 (i.e. B_ij = −P_ij / P_jj).
X is the binary user × item matrix (or summed behaviour weights with ``binary=False``).  Scores are
X_u · B.  λ = 250 is the ML-100K default (a quick leave-last-out sweep over 100..1000 in
docs/channels.md; larger catalogs / denser data want larger λ).  Unknown users get global popularity.

Large catalogues (never an error).  The Gram matrix and its inverse are dense: a fit holds about
three n × n matrices (0.5 GiB each at n = 8,000 in float64) and the Cholesky inverse costs O(n³)
(55–85 s for one λ at n = 8,000 on the project's shared 2-core box under a load of ~7; the valid-fold
search pays one solve per λ).  With more than ``max_items`` (default 8,000) items in the history the
channel fits in **head mode**: EASE on the ``max_items`` items that carry the most training
interactions (history rows), ties broken by dense position, i.e. by first appearance in the event
order (never by item id, so the choice is invariant to relabelling).  The history is restricted to
those items before X is built, so X, the Gram matrix and B only ever have head columns and memory is
bounded by ``max_items``, not by the catalogue.  The result is exactly a full EASE fitted on the
history restricted to the head: every user's row is their whole history on head items; items outside
the head are never recommended by EASE (the pool's other channels cover them); a user with no head
item in their history is unknown to EASE and gets the popularity of the head items.  ``mode_``,
``n_items_`` (the whole catalogue), ``n_head_items_`` and ``head_interaction_share_`` (share of the
history's rows on head items) record what happened; ``fit_info()`` returns them for the asset's
metadata and registry row.  Measured (bench/results_ease_large.md): on ML-100K (random 80/20 holdout)
a head of 50 % / 25 % / 10 % of the items keeps 99.3 % / 97.9 % / 91.1 % of full EASE's NDCG@10 and
99.6 % / 94.7 % / 76.6 % of its Recall@50; on 2M synthetic events (68,989 items) the 8,000-item head
carries 81 % of the rows, the fit takes 62 s (7 s head + X + Gram, 55 s solve) and the process peaks
at 1.8 GiB RSS (0.6 GiB of it the loaded events).  A catalogue beyond RAM for the sparse X itself is
not this module's problem; a sparse approximate inverse (SANSA) would lift the head limit, not done.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.linalg

from recsys.channels.base import IdIndex, interaction_matrix
from recsys.channels.popularity import popularity_vector, recommend_dense, scaled


def gram_matrix(X, dtype=np.float64) -> np.ndarray:
    """Dense XᵀX of a users × items (sparse) matrix: the part of the EASE fit every λ shares."""
    return (X.T @ X).toarray().astype(dtype, copy=False)


def ease_from_gram(gram: np.ndarray, l2: float, overwrite: bool = False) -> np.ndarray:
    """EASE item-item matrix from a precomputed Gram matrix; ``gram`` is left intact unless ``overwrite``."""
    G = gram if overwrite else gram.copy()
    G[np.diag_indices_from(G)] += l2
    # Gram + λI is symmetric positive definite: Cholesky inverse is cheaper and stabler than LU
    c, lower = scipy.linalg.cho_factor(G, overwrite_a=True, check_finite=False)
    P = scipy.linalg.cho_solve((c, lower), np.eye(G.shape[0], dtype=G.dtype), overwrite_b=True, check_finite=False)
    P /= (-np.diag(P))[None, :]  # B = P / -diag(P), in place (the negation copies the diagonal first)
    P[np.diag_indices_from(P)] = 0.0
    return P


def ease_weights(X, l2: float, dtype=np.float64) -> np.ndarray:
    """EASE item-item matrix for a users × items (sparse) matrix X."""
    return ease_from_gram(gram_matrix(X, dtype), l2, overwrite=True)


def head_positions(history: pl.DataFrame, items: IdIndex, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense positions (ascending) of the ``n`` items of ``items`` with the most rows in ``history``,
    and the row count of every item position.  Ties go to the lower dense position (earlier first
    appearance in the event order), never to an item id."""
    counts = np.bincount(items.positions(history["item_id"]), minlength=len(items)).astype(np.int64)
    order = np.argsort(-counts, kind="stable")  # stable: equal counts stay in dense-position order
    return np.sort(order[:n]), counts


class EASEChannel:
    name = "ease"

    def __init__(
        self,
        l2: float = 250.0,
        binary: bool = True,
        dtype: str = "float64",
        max_items: int = 8_000,
        weights: dict[str, float] | None = None,
        batch_size: int = 1024,
    ):
        self.l2 = l2
        self.binary = binary
        self.dtype = np.dtype(dtype)
        if max_items < 1:
            raise ValueError(f"EASEChannel max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self.weights = weights
        self.batch_size = batch_size

    def fit(self, history: pl.DataFrame, items: pl.DataFrame | None = None, runtime=None) -> EASEChannel:
        shared = self._prepare(history)
        return self._solve(shared, runtime, overwrite=True)

    def _prepare(self, history: pl.DataFrame) -> dict:
        """Everything of a fit that does not depend on λ: the head, ids, X, popularity and the Gram matrix."""
        catalogue = IdIndex.from_values(history["item_id"])
        info = {"mode": "full", "n_items": len(catalogue), "n_head_items": len(catalogue), "head_interaction_share": 1.0}
        if len(catalogue) > self.max_items:
            head, counts = head_positions(history, catalogue, self.max_items)
            in_head = np.zeros(len(catalogue), bool)
            in_head[head] = True
            history = history.filter(pl.Series(in_head[catalogue.positions(history["item_id"])]))
            share = float(counts[head].sum() / max(int(counts.sum()), 1))
            info = {"mode": "head", "n_items": len(catalogue), "n_head_items": len(head), "head_interaction_share": share}
        del catalogue
        # in head mode the restricted history numbers the head items in the same relative order
        items_ = IdIndex.from_values(history["item_id"])
        users_ = IdIndex.from_values(history["user_id"])
        X = interaction_matrix(history, users_, items_, self.weights, binary=self.binary)
        pop = scaled(popularity_vector(history, items_, None, self.weights))
        return {"items_": items_, "users_": users_, "X_": X, "pop_": pop, "gram": gram_matrix(X, self.dtype), "info": info}

    def _solve(self, shared: dict, runtime=None, overwrite: bool = False) -> EASEChannel:
        self.items_, self.users_, self.X_, self.pop_ = shared["items_"], shared["users_"], shared["X_"], shared["pop_"]
        info = shared["info"]
        self.mode_, self.n_items_ = info["mode"], info["n_items"]
        self.n_head_items_, self.head_interaction_share_ = info["n_head_items"], info["head_interaction_share"]
        self.B_ = ease_from_gram(shared["gram"], self.l2, overwrite=overwrite)
        if runtime is not None:
            runtime.log(f"ease: {len(self.users_)} users × {len(self.items_)} items, λ={self.l2}")
            if self.mode_ == "head":
                runtime.log(self.describe())
        return self

    def fit_info(self) -> dict:
        """How the fit treated the catalogue (JSON-able): mode, catalogue size, head size, head share."""
        return {
            "mode": self.mode_,
            "n_items": int(self.n_items_),
            "n_head_items": int(self.n_head_items_),
            "head_interaction_share": round(float(self.head_interaction_share_), 6),
            "max_items": int(self.max_items),
            "n_users": len(self.users_),
        }

    def describe(self) -> str:
        if self.mode_ == "full":
            return f"ease: full EASE on all {self.n_items_:,} items"
        return (
            f"ease: head mode, catalogue {self.n_items_:,} items > max_items {self.max_items:,}: EASE on the "
            f"{self.n_head_items_:,} items with the most training interactions ({self.head_interaction_share_:.1%} of "
            f"them); the other {self.n_items_ - self.n_head_items_:,} items are never recommended by EASE"
        )

    def _shared_key(self) -> tuple:
        return (self.binary, self.dtype.str, self.max_items, tuple(sorted((self.weights or {}).items())))

    def fit_settings(self, make_channel, settings: list[dict], history: pl.DataFrame, items=None, runtime=None):
        """(setting, fitted channel) per setting, the Gram matrix computed once for every λ (recsys.channels.search).

        Settings that change what X is (binary, weights, dtype) get their own Gram; each result equals
        ``make_channel(setting).fit(history)``."""
        key, shared = None, None
        for setting in settings:
            channel = make_channel(setting)
            if channel._shared_key() != key:
                key, shared = None, None  # free the previous Gram before building the next
                key, shared = channel._shared_key(), channel._prepare(history)
            yield setting, channel._solve(shared, runtime)

    def _score_block(self, user_pos: np.ndarray) -> np.ndarray:
        return np.asarray(self.X_[user_pos].astype(self.dtype) @ self.B_)

    def recommend(self, user_ids, k: int, exclude_seen: bool = True) -> pl.DataFrame:
        return recommend_dense(
            user_ids,
            k,
            self.users_,
            self.items_,
            self._score_block,
            self.X_ if exclude_seen else None,
            self.pop_,
            self.batch_size,
        )
