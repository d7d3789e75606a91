"""OutRank feature ranking against a label.

API:
    rank_features(frame, label, heuristic="MI-randomized", features=None, n_jobs=2, seed=0,
                  controls=False, alpha=1.0, beta=1.0) -> pl.DataFrame

Heuristics: "MI" (plain), "MI-randomized" (cardinality-corrected; outrank's MI-numba-randomized),
"3MR" (the paper's relevance − redundancy + relations ordering on top of MI-randomized). outrank's
names "MI-numba-randomized" and "MI-numba-3mr" are accepted as aliases.

Output, one row per feature, best first:
    feature Utf8, heuristic Utf8, score Float64, rank Int32 (1 = best), cardinality Int64
    (distinct values, null counted as one), coverage Float64 (share of non-null rows),
    + for 3MR: relevance (MI-randomized, nats), redundancy, relation (normalized medians at pick)
    + when control__ features are ranked: is_control Boolean, above_noise Boolean
``controls=True`` adds one control__f per ranked feature (recsys.outrank.controls) before scoring.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.outrank.combinations import redundancy_matrix, relation_matrix
from recsys.outrank.controls import CONTROL_PREFIX, above_noise, add_control_features
from recsys.outrank.encoding import EncodedColumn, encode_column
from recsys.outrank.mi import LabelGroups, mi_plain, mi_randomized
from recsys.outrank.parallel import thread_map
from recsys.outrank.threemr import three_mr

HEURISTICS = ("MI", "MI-randomized", "3MR")
_ALIASES = {"MI-numba-randomized": "MI-randomized", "MI-numba-3mr": "3MR", "mi": "MI", "3mr": "3MR"}


def _resolve(frame: pl.DataFrame, label: str, heuristic: str, features: list[str] | None) -> tuple[str, list[str]]:
    heuristic = _ALIASES.get(heuristic, heuristic)
    if heuristic not in HEURISTICS:
        raise ValueError(f"rank_features: unknown heuristic {heuristic!r}; expected one of {HEURISTICS}")
    if label not in frame.columns:
        raise ValueError(f"rank_features: label column {label!r} is not in the frame {frame.columns}")
    names = [c for c in frame.columns if c != label] if features is None else list(features)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"rank_features: feature columns {missing} are not in the frame")
    if label in names:
        raise ValueError(f"rank_features: the label {label!r} cannot also be a feature")
    if not names:
        raise ValueError("rank_features: no features to rank")
    return heuristic, names


def rank_features(
    frame: pl.DataFrame,
    label: str,
    heuristic: str = "MI-randomized",
    features: list[str] | None = None,
    n_jobs: int = 2,
    seed: int = 0,
    controls: bool = False,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> pl.DataFrame:
    heuristic, names = _resolve(frame, label, heuristic, features)
    if controls:
        frame = add_control_features(frame, [n for n in names if not n.startswith(CONTROL_PREFIX)], seed=seed)
        names = names + [CONTROL_PREFIX + n for n in names if not n.startswith(CONTROL_PREFIX)]
    if frame.height == 0:
        raise ValueError("rank_features: the frame has no rows")

    label_codes = encode_column(frame.get_column(label))
    groups = LabelGroups.build(label_codes.codes, label_codes.cardinality)
    mi = mi_plain if heuristic == "MI" else mi_randomized
    keep_codes = heuristic == "3MR"

    def encode_and_score(name: str) -> tuple[EncodedColumn | None, int, int, float]:
        # only 3MR needs every column's codes at once; the others drop them after scoring
        column = encode_column(frame.get_column(name))
        score = mi(column.codes, column.cardinality, groups)
        return (column if keep_codes else None), column.cardinality, column.n_null, score

    results = thread_map(encode_and_score, names, n_jobs)
    encoded = {name: r[0] for name, r in zip(names, results)}
    scores = np.asarray([r[3] for r in results], dtype=np.float64)
    meta = pl.DataFrame(
        {
            "feature": names,
            "cardinality": [r[1] for r in results],
            "coverage": [1.0 - r[2] / frame.height for r in results],
        },
        schema={"feature": pl.Utf8, "cardinality": pl.Int64, "coverage": pl.Float64},
    )

    if heuristic == "3MR":
        # ties in relevance go to the name order, as do ties in the greedy objective
        tie_order = np.asarray(sorted(range(len(names)), key=lambda i: (-scores[i], names[i])))
        picked = three_mr(
            scores,
            redundancy_matrix(names, encoded, n_jobs),
            relation_matrix(names, encoded, groups, n_jobs),
            tie_order,
            alpha=alpha,
            beta=beta,
        )
        ranking = pl.DataFrame(
            {
                "feature": [names[i] for i in picked.order],
                "score": picked.objective,
                "relevance": scores[picked.order],
                "redundancy": picked.redundancy,
                "relation": picked.relation,
            }
        )
    else:
        ranking = pl.DataFrame({"feature": names, "score": scores}).sort(["score", "feature"], descending=[True, False])

    ranking = ranking.with_columns(
        heuristic=pl.lit(heuristic),
        rank=pl.int_range(1, ranking.height + 1, dtype=pl.Int32),
    ).join(meta, on="feature", how="left", maintain_order="left")
    lead = ["feature", "heuristic", "score", "rank", "cardinality", "coverage"]
    ranking = ranking.select(lead + [c for c in ranking.columns if c not in lead])
    if any(n.startswith(CONTROL_PREFIX) for n in names):
        ranking = above_noise(ranking)
    return ranking
