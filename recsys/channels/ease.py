"""EASE channel (stage ``ease``): Steck, "Embarrassingly Shallow Autoencoders for Sparse Data" (WWW 2019).

API::

    EASEChannel(l2=250.0, binary=True, dtype="float64", max_items=30_000, weights=None, batch_size=1024)
        .fit(history, items=None, runtime=None) -> self
        .recommend(user_ids, k, exclude_seen=True) -> pl.DataFrame(user_id, item_id, score, rank)
        .B_  (n_items × n_items item-item weights, zero diagonal)
        .fit_settings(make_channel, settings, history) -> iterator of (setting, fitted channel),
            one Gram matrix for every λ (the valid-fold search, recsys/channels/search.py)

Closed form: P = (XᵀX + λI)⁻¹, B = I − P·diag(1/diag(P)), diag(B) = 0 (i.e. B_ij = −P_ij / P_jj).
X is the binary user × item matrix (or summed behaviour weights with ``binary=False``).  Scores are
X_u · B.  The Gram matrix is dense, so memory is ~2 · n_items² · itemsize: ``fit`` refuses catalogs
above ``max_items`` with an error naming the count.  λ = 250 is the ML-100K default (a quick
leave-last-out sweep over 100..1000 in docs/channels.md; larger catalogs / denser data want larger λ).
Unknown users get global popularity.
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


class EASEChannel:
    name = "ease"

    def __init__(
        self,
        l2: float = 250.0,
        binary: bool = True,
        dtype: str = "float64",
        max_items: int = 30_000,
        weights: dict[str, float] | None = None,
        batch_size: int = 1024,
    ):
        self.l2 = l2
        self.binary = binary
        self.dtype = np.dtype(dtype)
        self.max_items = max_items
        self.weights = weights
        self.batch_size = batch_size

    def fit(self, history: pl.DataFrame, items: pl.DataFrame | None = None, runtime=None) -> EASEChannel:
        shared = self._prepare(history)
        return self._solve(shared, runtime, overwrite=True)

    def _prepare(self, history: pl.DataFrame) -> dict:
        """Everything of a fit that does not depend on λ: ids, X, popularity and the Gram matrix."""
        items_ = IdIndex.from_values(history["item_id"])
        n_items = len(items_)
        if n_items > self.max_items:
            gib = 2 * n_items**2 * self.dtype.itemsize / 2**30
            raise ValueError(
                f"EASE needs a dense {n_items}×{n_items} Gram matrix (~{gib:.1f} GiB) but max_items="
                f"{self.max_items}; use another channel or raise max_items knowingly"
            )
        users_ = IdIndex.from_values(history["user_id"])
        X = interaction_matrix(history, users_, items_, self.weights, binary=self.binary)
        pop = scaled(popularity_vector(history, items_, None, self.weights))
        return {"items_": items_, "users_": users_, "X_": X, "pop_": pop, "gram": gram_matrix(X, self.dtype)}

    def _solve(self, shared: dict, runtime=None, overwrite: bool = False) -> EASEChannel:
        self.items_, self.users_, self.X_, self.pop_ = shared["items_"], shared["users_"], shared["X_"], shared["pop_"]
        self.B_ = ease_from_gram(shared["gram"], self.l2, overwrite=overwrite)
        if runtime is not None:
            runtime.log(f"ease: {len(self.users_)} users × {len(self.items_)} items, λ={self.l2}")
        return self

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
