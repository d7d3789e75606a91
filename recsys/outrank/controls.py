"""Control (noise) features of matched cardinality and the "above noise" rule.

API:
    add_control_features(frame, features=None, seed=0) -> pl.DataFrame
        adds, for every feature f, an Int32 column ``control__f`` of uniform random codes with
        exactly f's cardinality (null counted as a value, as it is scored)
    above_noise(ranking) -> pl.DataFrame
        adds ``is_control`` (name starts with ``control__``) and ``above_noise``

Rule: a non-control feature is above noise when it is ranked strictly before every control
feature and, for the MI heuristics, its score is strictly greater than the best control's score
(a tie with noise is noise). For 3MR only the rank counts, because 3MR's objective at pick time is
not comparable across picks.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.outrank.encoding import encode_column

CONTROL_PREFIX = "control__"


def is_control(name: str) -> bool:
    return name.startswith(CONTROL_PREFIX)


def control_codes(n_rows: int, cardinality: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random codes that take every one of ``cardinality`` values at least once."""
    if cardinality <= 0:
        return np.zeros(n_rows, dtype=np.int32)
    codes = np.concatenate([np.arange(cardinality, dtype=np.int32), rng.integers(0, cardinality, n_rows - cardinality, dtype=np.int32)])
    rng.shuffle(codes)
    return codes


def add_control_features(frame: pl.DataFrame, features: list[str] | None = None, seed: int = 0) -> pl.DataFrame:
    names = [c for c in frame.columns if not is_control(c)] if features is None else list(features)
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ValueError(f"add_control_features: columns {missing} are not in the frame")
    columns = []
    for index, name in enumerate(names):
        cardinality = encode_column(frame.get_column(name)).cardinality
        rng = np.random.default_rng([seed, index])
        columns.append(pl.Series(CONTROL_PREFIX + name, control_codes(frame.height, cardinality, rng)))
    return frame.with_columns(columns)


def above_noise(ranking: pl.DataFrame) -> pl.DataFrame:
    control = pl.col("feature").str.starts_with(CONTROL_PREFIX)
    controls = ranking.filter(control)
    if controls.is_empty():
        raise ValueError("above_noise: the ranking holds no control__ features; use controls=True or add_control_features")
    best_rank = controls.get_column("rank").min()
    rule = ~control & (pl.col("rank") < best_rank)
    heuristic = ranking.get_column("heuristic")[0] if "heuristic" in ranking.columns else "MI-randomized"
    if heuristic != "3MR":
        rule = rule & (pl.col("score") > controls.get_column("score").max())
    return ranking.with_columns(is_control=control, above_noise=rule)
