"""3MR (Škrlj & Mramor, RecSys 2023): greedy relevance − redundancy + relations ordering.

API:
    three_mr(relevance[F], redundancy[F, F], relation[F, F], tie_order[F], alpha=1.0, beta=1.0)
        -> ThreeMROrder(order, objective, redundancy, relation)

Each score set is min-max normalized first (relevance over features, redundancy and relation over
the off-diagonal pairs; a constant set normalizes to 0). The first pick is the most relevant
feature; each next pick maximizes
    relevance − alpha·median(redundancy with the ranked) + beta·median(relation with the ranked).
``objective``, ``redundancy`` and ``relation`` are the normalized values at the moment of the pick.
Ties go to the earlier position in ``tie_order`` (a permutation of 0..F-1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ThreeMROrder:
    order: np.ndarray  # feature indices, best first
    objective: np.ndarray  # per pick
    redundancy: np.ndarray  # per pick
    relation: np.ndarray  # per pick


def minmax(values: np.ndarray) -> np.ndarray:
    lo, hi = np.nanmin(values), np.nanmax(values)
    if not np.isfinite(hi - lo) or hi - lo <= 0.0:
        return np.where(np.isnan(values), np.nan, 0.0)
    return (values - lo) / (hi - lo)


def three_mr(
    relevance: np.ndarray,
    redundancy: np.ndarray,
    relation: np.ndarray,
    tie_order: np.ndarray,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> ThreeMROrder:
    f = relevance.size
    off_diagonal = ~np.eye(f, dtype=bool)
    rel = minmax(relevance.astype(np.float64))
    red = np.zeros((f, f))
    rlt = np.zeros((f, f))
    if f > 1:
        red[off_diagonal] = minmax(redundancy[off_diagonal])
        rlt[off_diagonal] = minmax(relation[off_diagonal])
    # position in tie_order breaks ties: argmax returns the first maximum
    position = np.empty(f, dtype=np.int64)
    position[tie_order] = np.arange(f)

    first = int(tie_order[np.argmax(rel[tie_order])])
    order, objective, red_pick, rel_pick = [first], [rel[first]], [0.0], [0.0]
    remaining = np.ones(f, dtype=bool)
    remaining[first] = False
    while remaining.any():
        candidates = np.flatnonzero(remaining)
        candidates = candidates[np.argsort(position[candidates], kind="stable")]
        ranked = np.asarray(order)
        med_red = np.median(red[np.ix_(candidates, ranked)], axis=1)
        med_rlt = np.median(rlt[np.ix_(candidates, ranked)], axis=1)
        scores = rel[candidates] - alpha * med_red + beta * med_rlt
        best = int(np.argmax(scores))
        pick = int(candidates[best])
        order.append(pick)
        objective.append(scores[best])
        red_pick.append(med_red[best])
        rel_pick.append(med_rlt[best])
        remaining[pick] = False
    return ThreeMROrder(
        order=np.asarray(order, dtype=np.int64),
        objective=np.asarray(objective, dtype=np.float64),
        redundancy=np.asarray(red_pick, dtype=np.float64),
        relation=np.asarray(rel_pick, dtype=np.float64),
    )
