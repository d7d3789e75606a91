"""Mutual information of a categorical feature with a label, plain and cardinality-corrected.

API:
    LabelGroups.build(codes, cardinality) -> LabelGroups   per-label counts + the shared shift index
    mi_plain(feature_codes, feature_cardinality, groups) -> float
    mi_randomized(feature_codes, feature_cardinality, groups) -> float

Definitions (natural log, N rows, n_l rows with label l, label groups with n_l = 1 skipped exactly
as outrank's ``compute_entropies`` skips them):

    MI            = H(F) − Σ_l p(l)·H(F | L=l)
    MI-randomized = Σ_l p(l)·[H(F_spoof | L=l) − H(F | L=l)]
                    with F_spoof[i] = F[(i + n_l) mod N] for every row i of group l

Since p(l)·H(F|l) = (n_l/N)·ln n_l − (1/N)·Σ_f c_lf·ln c_lf, both reduce to sums of c·ln c over
(label, value) pair counts: one bincount for F, one for F gathered through the shift index, which
depends on the label only and is therefore built once and reused for every feature.

Equality with ``outrank.algorithms.feature_ranking.ranking_mi_numba.mutual_info_estimator_numba(
feature, label, approximation_factor=1.0, cardinality_correction=...)`` is tested in
tests/recsys/test_outrank_faithfulness.py. When the feature column equals the label column code for
code, outrank switches the correction off (its "diagonal" case) and so does ``mi_randomized``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.outrank.entropy import entropy, joint_xlogx, sum_xlogx


@dataclass(frozen=True)
class LabelGroups:
    codes: np.ndarray  # int32 label code per row
    cardinality: int
    counts: np.ndarray  # rows per label code
    shift: np.ndarray  # int32 (i + n_{label[i]}) mod N: where row i reads its spoofed value
    keep: np.ndarray | None  # rows whose label group has more than one row; None when all do
    sum_nlogn: float  # Σ n_l ln n_l over the kept groups

    @property
    def n_rows(self) -> int:
        return int(self.codes.size)

    @classmethod
    def build(cls, codes: np.ndarray, cardinality: int) -> LabelGroups:
        n = codes.size
        counts = np.bincount(codes, minlength=cardinality)
        per_row = counts[codes]
        shift = np.arange(n, dtype=np.int64) + per_row
        # n_l ≤ N, so one subtraction is the modulo
        shift[shift >= n] -= n
        singleton = per_row == 1
        keep = ~singleton if singleton.any() else None
        return cls(
            codes=codes,
            cardinality=cardinality,
            counts=counts,
            shift=shift.astype(np.int32) if n < 2**31 else shift,
            keep=keep,
            sum_nlogn=sum_xlogx(counts),
        )

    def kept(self, values: np.ndarray) -> np.ndarray:
        return values if self.keep is None else values[self.keep]


def _conditional_xlogx(feature: np.ndarray, cardinality: int, groups: LabelGroups) -> float:
    """Σ c·ln c over (label, feature) pair counts of the rows in groups with n_l > 1."""
    return joint_xlogx(groups.kept(groups.codes), groups.kept(feature), cardinality, groups.cardinality * cardinality)


def mi_plain(feature: np.ndarray, cardinality: int, groups: LabelGroups) -> float:
    """H(F) − Σ_l p(l) H(F|L=l), in nats."""
    n = groups.n_rows
    if n == 0:
        return 0.0
    conditional = (groups.sum_nlogn - _conditional_xlogx(feature, cardinality, groups)) / n
    return entropy(feature, cardinality) - conditional


def mi_randomized(feature: np.ndarray, cardinality: int, groups: LabelGroups) -> float:
    """Σ_l p(l)[H(F_spoof|L=l) − H(F|L=l)], in nats (outrank's MI-numba-randomized)."""
    n = groups.n_rows
    if n == 0:
        return 0.0
    if np.array_equal(feature, groups.codes):
        return mi_plain(feature, cardinality, groups)
    real = _conditional_xlogx(feature, cardinality, groups)
    spoofed = _conditional_xlogx(feature[groups.shift], cardinality, groups)
    return (real - spoofed) / n
