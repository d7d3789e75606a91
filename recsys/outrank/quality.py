"""Data-quality report of categorical features, and redundant feature pairs.

API:
    quality_report(frame, label, features=None, rare_min_count=5, id_like_share=0.5,
                   leak_threshold=0.9, n_jobs=2, seed=0) -> pl.DataFrame, one row per feature:
        feature Utf8, dtype Utf8, cardinality Int64 (null counted as a value), coverage Float64
        (non-null share), top_value_share Float64, rare_value_share Float64 (share of rows whose
        value occurs fewer than rare_min_count times), is_constant Boolean (one value),
        is_id_like Boolean (cardinality > id_like_share · rows), label_explained Float64,
        label_explained_noise Float64, leakage Boolean
    redundant_pairs(frame, features=None, threshold=0.9, n_jobs=2, seed=0) -> pl.DataFrame
        feature_a Utf8, feature_b Utf8, redundancy Float64 (normalized MI adjusted for chance,
        recsys.outrank.combinations.pair_nmi: 1 for a relabelled copy, ≈ 0 for independent
        features whatever their cardinality), pairs with redundancy ≥ threshold, most redundant first

Leakage. ``label_explained`` = 1 − H(L|F)/H(L), the share of label uncertainty that knowing the
feature removes (1: the feature determines the label). A unique key determines any label too, so
the same share is measured for the feature with its rows randomly permuted
(``label_explained_noise``: same values, same counts, no relation to the label). A feature leaks
when label_explained − label_explained_noise ≥ leak_threshold: it nearly determines the label and
that is not an artifact of its cardinality.
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl

from recsys.outrank.combinations import pair_nmi
from recsys.outrank.encoding import EncodedColumn, encode_column
from recsys.outrank.entropy import entropy, joint_xlogx, sum_xlogx, value_counts
from recsys.outrank.parallel import encode_columns, thread_map


def _label_explained(feature: EncodedColumn, label: EncodedColumn, h_label: float) -> float:
    n = feature.codes.size
    if n == 0 or h_label <= 0.0:
        return 0.0
    # H(L|F) = (1/N)[Σ_f m_f ln m_f − Σ_{f,l} c ln c]
    h_cond = (
        sum_xlogx(value_counts(feature.codes, feature.cardinality))
        - joint_xlogx(feature.codes, label.codes, label.cardinality, feature.cardinality * label.cardinality)
    ) / n
    return float(np.clip(1.0 - h_cond / h_label, 0.0, 1.0))


def quality_report(
    frame: pl.DataFrame,
    label: str,
    features: list[str] | None = None,
    rare_min_count: int = 5,
    id_like_share: float = 0.5,
    leak_threshold: float = 0.9,
    n_jobs: int = 2,
    seed: int = 0,
) -> pl.DataFrame:
    if label not in frame.columns:
        raise ValueError(f"quality_report: label column {label!r} is not in the frame {frame.columns}")
    names = [c for c in frame.columns if c != label] if features is None else list(features)
    n = frame.height
    label_codes = encode_column(frame.get_column(label))
    h_label = entropy(label_codes.codes, label_codes.cardinality)
    encoded = encode_columns(frame, names, n_jobs)
    permutation = np.random.default_rng(seed).permutation(n)

    def profile(name: str) -> dict:
        column = encoded[name]
        counts = value_counts(column.codes, column.cardinality)
        shuffled = EncodedColumn(column.codes[permutation], column.cardinality, column.n_null)
        return {
            "feature": name,
            "dtype": str(frame.schema[name]),
            "cardinality": column.cardinality,
            "coverage": 1.0 - column.n_null / n if n else 0.0,
            "top_value_share": float(counts.max()) / n if n else 0.0,
            "rare_value_share": float(counts[counts < rare_min_count].sum()) / n if n else 0.0,
            "is_constant": column.cardinality <= 1,
            "is_id_like": column.cardinality > id_like_share * n,
            "label_explained": _label_explained(column, label_codes, h_label),
            "label_explained_noise": _label_explained(shuffled, label_codes, h_label),
        }

    report = pl.DataFrame(
        thread_map(profile, names, n_jobs),
        schema={
            "feature": pl.Utf8,
            "dtype": pl.Utf8,
            "cardinality": pl.Int64,
            "coverage": pl.Float64,
            "top_value_share": pl.Float64,
            "rare_value_share": pl.Float64,
            "is_constant": pl.Boolean,
            "is_id_like": pl.Boolean,
            "label_explained": pl.Float64,
            "label_explained_noise": pl.Float64,
        },
    )
    return report.with_columns(leakage=(pl.col("label_explained") - pl.col("label_explained_noise")) >= leak_threshold)


def redundant_pairs(
    frame: pl.DataFrame, features: list[str] | None = None, threshold: float = 0.9, n_jobs: int = 2, seed: int = 0
) -> pl.DataFrame:
    names = list(frame.columns) if features is None else list(features)
    encoded = encode_columns(frame, names, n_jobs)
    pairs = list(itertools.combinations(names, 2))
    permutation = np.random.default_rng(seed).permutation(frame.height)
    scores = thread_map(lambda p: pair_nmi(encoded[p[0]], encoded[p[1]], permutation), pairs, n_jobs)
    table = pl.DataFrame(
        {"feature_a": [a for a, _ in pairs], "feature_b": [b for _, b in pairs], "redundancy": scores},
        schema={"feature_a": pl.Utf8, "feature_b": pl.Utf8, "redundancy": pl.Float64},
    )
    return table.filter(pl.col("redundancy") >= threshold).sort(["redundancy", "feature_a", "feature_b"], descending=[True, False, False])
