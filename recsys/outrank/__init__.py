"""OutRank: cardinality-aware categorical feature ranking and data-quality profiling.

Public API (see each module's docstring for the exact frames):
    rank_features(frame, label, heuristic="MI-randomized", features=None, n_jobs=2, seed=0,
                  controls=False, alpha=1.0, beta=1.0)
        -> feature, heuristic, score, rank, cardinality, coverage [, relevance, redundancy,
           relation (3MR)] [, is_control, above_noise (when control__ features are ranked)]
    quality_report(frame, label, ...) -> one row per feature: cardinality, coverage,
        top_value_share, rare_value_share, is_constant, is_id_like, label_explained,
        label_explained_noise, leakage
    redundant_pairs(frame, features=None, threshold=0.9) -> feature_a, feature_b, redundancy
    add_control_features(frame, features=None, seed=0) -> frame + control__<f> columns
    above_noise(ranking) -> ranking + is_control, above_noise
    mi_plain / mi_randomized / LabelGroups: the estimators on dense int32 codes
Heuristics: "MI", "MI-randomized" (= outrank's MI-numba-randomized), "3MR". docs/outrank.md has
the method, the deviations from outrank 0.97.5 and the benchmark.
"""

from recsys.outrank.controls import CONTROL_PREFIX, above_noise, add_control_features
from recsys.outrank.encoding import EncodedColumn, encode_column
from recsys.outrank.mi import LabelGroups, mi_plain, mi_randomized
from recsys.outrank.quality import quality_report, redundant_pairs
from recsys.outrank.ranking import HEURISTICS, rank_features

__all__ = [
    "CONTROL_PREFIX",
    "HEURISTICS",
    "EncodedColumn",
    "LabelGroups",
    "above_noise",
    "add_control_features",
    "encode_column",
    "mi_plain",
    "mi_randomized",
    "quality_report",
    "rank_features",
    "redundant_pairs",
]
