"""recsys.outrank equals outrank 0.97.5's numba estimator, called the way outrank's ranking calls it.

outrank's mixed_rank_graph reads every field as a string (a missing field is an empty string),
encodes each column with pandas category codes, and importance_estimator.numba_mi calls
mutual_info_estimator_numba(feature_codes.astype(int32), label_codes.astype(int32),
approximation_factor=float32(1.0), cardinality_correction=heuristic == "MI-numba-randomized").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

ranking_mi_numba = pytest.importorskip("outrank.algorithms.feature_ranking.ranking_mi_numba")

from recsys.outrank import rank_features  # noqa: E402


def outrank_codes(column: pl.Series) -> np.ndarray:
    as_text = column.cast(pl.Utf8).fill_null("").to_list()
    return pd.Series(as_text).astype("category").cat.codes.to_numpy().astype(np.int32)


def outrank_scores(frame: pl.DataFrame, label: str, correction: bool) -> dict[str, float]:
    label_codes = outrank_codes(frame[label])
    scores = {}
    for name in frame.columns:
        if name == label:
            continue
        feature_codes = outrank_codes(frame[name])
        # outrank silently drops the correction when the code sums coincide ("diagonal" check)
        assert np.sum(label_codes.astype(np.int64) - feature_codes) != 0, f"{name}: pick another seed"
        scores[name] = float(ranking_mi_numba.mutual_info_estimator_numba(feature_codes, label_codes, np.float32(1.0), correction))
    return scores


def assert_close(ours: pl.DataFrame, reference: dict[str, float]) -> None:
    got = dict(zip(ours["feature"], ours["score"]))
    assert set(got) == set(reference)
    for name, expected in reference.items():
        assert got[name] == pytest.approx(expected, abs=1e-4, rel=1e-3), name


def random_frame(seed: int, rows: int, label_classes: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    columns = {"label": rng.integers(0, label_classes, rows)}
    for card in (2, 3, 7, 40, 300, rows // 3, rows):
        columns[f"uniform_{card}"] = rng.integers(0, card, rows)
    columns["skewed"] = np.minimum((400 * rng.random(rows) ** 4).astype(np.int64), 399)
    return pl.DataFrame(columns)


def planted_frame(seed: int = 3, rows: int = 6000) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    driver = rng.integers(0, 12, rows)
    weak = rng.integers(0, 4, rows)
    logit = rng.normal(0, 1.5, 12)[driver] + np.array([-0.6, 0.0, 0.2, 0.6])[weak] - 0.8
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    flip = rng.random(rows) < 0.01
    return pl.DataFrame(
        {
            "label": np.where(label == 1, "buy", "view"),
            "informative": [f"cat_{v}" for v in driver],
            "weak": weak.astype(np.float64) / 4,
            "noise": rng.integers(0, 9, rows),
            "high_card_noise": rng.integers(0, 3000, rows),
            "leak": np.where(flip, 1 - label, label) + 10,
            "row_id": np.arange(rows) * 7 + 1,
            "sparse": pl.Series(np.where(rng.random(rows) < 0.4, driver % 3, -1)).replace(-1, None),
        }
    )


@pytest.mark.parametrize(("seed", "rows", "label_classes"), [(0, 3000, 2), (1, 2500, 5), (2, 1500, 400)])
@pytest.mark.parametrize("heuristic", ["MI-randomized", "MI"])
def test_random_data_matches_outrank(seed: int, rows: int, label_classes: int, heuristic: str) -> None:
    # 400 label classes on 1500 rows leaves singleton label groups, which outrank skips
    frame = random_frame(seed, rows, label_classes)
    ours = rank_features(frame, "label", heuristic=heuristic, n_jobs=2)
    assert_close(ours, outrank_scores(frame, "label", correction=heuristic == "MI-randomized"))


@pytest.mark.parametrize("heuristic", ["MI-randomized", "MI"])
def test_planted_data_matches_outrank(heuristic: str) -> None:
    frame = planted_frame()
    ours = rank_features(frame, "label", heuristic=heuristic)
    assert_close(ours, outrank_scores(frame, "label", correction=heuristic == "MI-randomized"))


def test_plain_mi_equals_outranks_sklearn_mi_heuristic() -> None:
    # outrank's heuristic "MI" is sklearn's discrete mutual_info_classif, in nats
    from sklearn.feature_selection import mutual_info_classif

    frame = planted_frame(seed=5, rows=3000).drop("row_id")
    ours = dict(rank_features(frame, "label", heuristic="MI").select("feature", "score").iter_rows())
    label = outrank_codes(frame["label"])
    for name, score in ours.items():
        expected = mutual_info_classif(outrank_codes(frame[name]).reshape(-1, 1), label, discrete_features=True)[0]
        assert score == pytest.approx(expected, abs=1e-9), name


def test_feature_identical_to_label_takes_outranks_diagonal_branch() -> None:
    rng = np.random.default_rng(11)
    label = rng.integers(0, 3, 2000)
    frame = pl.DataFrame({"label": label, "copy": label})
    codes = outrank_codes(frame["label"])
    expected = ranking_mi_numba.mutual_info_estimator_numba(codes, codes.copy(), np.float32(1.0), True)
    score = rank_features(frame, "label")["score"][0]
    assert score == pytest.approx(float(expected), abs=1e-4)
    # the diagonal branch returns plain MI, here H(label) ≈ ln 3
    assert score == pytest.approx(np.log(3), abs=0.01)
