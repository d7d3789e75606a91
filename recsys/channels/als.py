"""ALS channel (stage ``als``): implicit-feedback matrix factorization (Hu, Koren & Volinsky 2008)
through ``implicit.cpu.als.AlternatingLeastSquares``.

API::

    ALSChannel(factors=64, regularization=0.05, iterations=15, alpha=10.0, random_state=0,
               weights=None, batch_size=2048)
        .fit(history, items=None, runtime=None) -> self
        .recommend(user_ids, k, exclude_seen=True) -> pl.DataFrame(user_id, item_id, score, rank)
        .item_factors_ / .user_factors_ (np.float32, dense item / user positions)

Confidence is c_ui = 1 + alpha * w_ui with w_ui the summed behaviour weights (EVENT_WEIGHTS); the
matrix handed to implicit already holds c_ui (implicit treats stored values as the confidence and
its own ``alpha`` is left at 1).  Threads: ``runtime.threads`` when a runtime is given (implicit
runs its own thread pool; BLAS is pinned to one thread during fit to avoid oversubscription), else
implicit's default.  Scores are u·v over all items in user blocks; unknown users get global
popularity.  Deterministic for a fixed random_state and thread count.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.channels.base import IdIndex, interaction_matrix
from recsys.channels.popularity import popularity_vector, recommend_dense, scaled


class ALSChannel:
    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 10.0,
        random_state: int = 0,
        weights: dict[str, float] | None = None,
        batch_size: int = 2048,
    ):
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.random_state = random_state
        self.weights = weights
        self.batch_size = batch_size

    def fit(self, history: pl.DataFrame, items: pl.DataFrame | None = None, runtime=None) -> ALSChannel:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        self.users_ = IdIndex.from_values(history["user_id"])
        self.items_ = IdIndex.from_values(history["item_id"])
        self.seen_ = interaction_matrix(history, self.users_, self.items_, self.weights)
        confidence = self.seen_.copy()
        confidence.data = (1.0 + self.alpha * confidence.data).astype(np.float32)
        threads = int(runtime.threads) if runtime is not None else 0
        # implicit checks the BLAS thread pool when the model is built, so build it inside the limit
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=1.0,
                iterations=self.iterations,
                random_state=self.random_state,
                num_threads=threads,
            )
            model.fit(confidence, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, np.float32)
        self.item_factors_ = np.asarray(model.item_factors, np.float32)
        self.pop_ = scaled(popularity_vector(history, self.items_, None, self.weights))
        if runtime is not None:
            runtime.log(
                f"als: {len(self.users_)} users × {len(self.items_)} items, nnz={self.seen_.nnz}, "
                f"factors={self.factors}, iterations={self.iterations}"
            )
        return self

    def _score_block(self, user_pos: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_pos] @ self.item_factors_.T

    def recommend(self, user_ids, k: int, exclude_seen: bool = True) -> pl.DataFrame:
        return recommend_dense(
            user_ids,
            k,
            self.users_,
            self.items_,
            self._score_block,
            self.seen_ if exclude_seen else None,
            self.pop_,
            self.batch_size,
        )
