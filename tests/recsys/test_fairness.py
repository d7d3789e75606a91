"""Item-exposure fairness (Rampisela et al., TORS 2024) on hand-worked examples.

Notation: n items, m lists, k items per list, S = m·k slots, q = S div n, r = S mod n.
Corrected Gini: 0 = fairest achievable, 1 = unfairest; corrected Jain / entropy / QF: 1 = fairest.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.metrics import exposure, item_fairness
from recsys.metrics.fairness import entropy, gini, jain, normalized_gini

REC_SCHEMA = {"user_id": pl.Int64, "item_id": pl.Int64, "score": pl.Float64, "rank": pl.Int32}


def lists(*item_lists) -> pl.DataFrame:
    rows = [(u, item, 1.0, pos + 1) for u, items in enumerate(item_lists) for pos, item in enumerate(items)]
    return pl.DataFrame(rows, schema=REC_SCHEMA, orient="row")


def measures(recs: pl.DataFrame, n_items: int, k: int) -> dict[str, float]:
    return dict(item_fairness(recs, n_items, ks=(k,)).select("metric", "value").rows())


def test_exposure_counts_and_discounts():
    recs = lists([1, 2], [1, 3])
    assert exposure(recs, k=2).rows() == [(1, 2.0), (2, 1.0), (3, 1.0)]
    # position 1 weighs 1/log2(2) = 1, position 2 weighs 1/log2(3)
    discounted = dict(exposure(recs, k=2, discount=True).rows())
    assert discounted[1] == pytest.approx(2.0) and discounted[2] == pytest.approx(1 / np.log2(3))
    assert exposure(recs, k=1).rows() == [(1, 2.0)]


def test_identical_lists_are_the_unfairest_outcome():
    # n=4, m=2, k=2: both lists {a, b} -> exposure [2, 2, 0, 0]
    got = measures(lists([0, 1], [0, 1]), n_items=4, k=2)
    # Gini: sorted [0, 0, 2, 2], weights (2i-n-1) = -3, -1, 1, 3 -> (2 + 6) / (n·S = 16) = 0.5
    assert got["gini"] == pytest.approx(0.5)
    # the largest achievable Gini is 1 - k/n = 0.5, so the corrected Gini is 1
    assert got["gini_norm"] == pytest.approx(1.0)
    # Jain = S² / (n·Σx²) = 16 / (4·8) = 0.5 = k/n, its achievable minimum -> corrected 0
    assert got["jain"] == pytest.approx(0.5) and got["jain_norm"] == pytest.approx(0.0)
    # entropy: shares [1/2, 1/2] -> ln 2 / ln 4 = 0.5 = log_n k, its minimum -> corrected 0
    assert got["entropy"] == pytest.approx(0.5) and got["entropy_norm"] == pytest.approx(0.0)
    # QF: 2 of 4 items exposed; corrected (2 - k) / (min(n, S) - k) = 0
    assert got["qf"] == pytest.approx(0.5) and got["qf_norm"] == pytest.approx(0.0)
    assert got["gini_w_norm"] == pytest.approx(1.0)


def test_disjoint_lists_are_the_fairest_outcome():
    # n=4, m=2, k=2: lists {a, b}, {c, d} -> exposure [1, 1, 1, 1]
    got = measures(lists([0, 1], [2, 3]), n_items=4, k=2)
    assert got["gini"] == pytest.approx(0.0) and got["gini_norm"] == pytest.approx(0.0)
    assert got["jain"] == pytest.approx(1.0) and got["jain_norm"] == pytest.approx(1.0)
    assert got["entropy"] == pytest.approx(1.0) and got["entropy_norm"] == pytest.approx(1.0)
    assert got["qf_norm"] == pytest.approx(1.0)
    # Gini-w: exposures [1, w, 1, w], w = 1/log2(3); S = n, so the minimum is every slot on a
    # distinct item, which this is -> corrected 0
    assert got["gini_w_norm"] == pytest.approx(0.0, abs=1e-12)


def test_partly_shared_lists():
    # n=4, m=2, k=2: lists {a, b}, {a, c} -> exposure [2, 1, 1, 0]
    got = measures(lists([0, 1], [0, 2]), n_items=4, k=2)
    # Gini: sorted [0, 1, 1, 2] -> (-1 + 1 + 6) / 16 = 0.375; corrected 0.375 / 0.5 = 0.75
    assert got["gini"] == pytest.approx(0.375) and got["gini_norm"] == pytest.approx(0.75)
    # Jain: 16 / (4·(4 + 1 + 1)) = 2/3; corrected (2/3 - 1/2) / (1 - 1/2) = 1/3
    assert got["jain"] == pytest.approx(2 / 3) and got["jain_norm"] == pytest.approx(1 / 3)
    # entropy: shares [1/2, 1/4, 1/4] -> 1.5 ln 2 / ln 4 = 0.75; corrected (0.75 - 0.5) / 0.5 = 0.5
    assert got["entropy"] == pytest.approx(0.75) and got["entropy_norm"] == pytest.approx(0.5)
    # QF: 3 exposed -> raw 3/4, corrected (3 - 2) / (4 - 2) = 0.5
    assert got["qf"] == pytest.approx(0.75) and got["qf_norm"] == pytest.approx(0.5)


def test_fewer_slots_than_items_raw_gini_cannot_reach_zero():
    # n=10, m=2, k=3: S = 6 < n. Fairest achievable: 6 distinct items once each
    fair = measures(lists([0, 1, 2], [3, 4, 5]), n_items=10, k=3)
    # raw Gini: sorted [0]*4 + [1]*6, Σ_{i=5..10} (2i - 11) = -1+1+3+5+7+9 = 24 -> 24 / 60 = 0.4,
    # which equals r(n-r)/(n·S) = 6·4/60: the raw measure calls the fairest outcome unfair
    assert fair["gini"] == pytest.approx(0.4) and fair["gini_norm"] == pytest.approx(0.0)
    # raw Jain 36 / (10·6) = 0.6 is its achievable maximum -> corrected 1
    assert fair["jain"] == pytest.approx(0.6) and fair["jain_norm"] == pytest.approx(1.0)
    assert fair["entropy_norm"] == pytest.approx(1.0) and fair["qf_norm"] == pytest.approx(1.0)

    # lists {1,2,3}, {1,2,4} -> exposure [2, 2, 1, 1, 0 x 6]
    mid = measures(lists([0, 1, 2], [0, 1, 3]), n_items=10, k=3)
    # Gini: i = 7..10 weights 3, 5, 7, 9 on [1, 1, 2, 2] -> 40 / 60 = 2/3;
    # corrected (2/3 - 0.4) / ((1 - 3/10) - 0.4) = (4/15) / (3/10) = 8/9
    assert mid["gini"] == pytest.approx(2 / 3) and mid["gini_norm"] == pytest.approx(8 / 9)
    # Jain 36 / (10·10) = 0.36, range [k/n = 0.3, 0.6] -> 0.06 / 0.3 = 0.2
    assert mid["jain"] == pytest.approx(0.36) and mid["jain_norm"] == pytest.approx(0.2)
    # entropy (any log base): H = (2/3) ln 3 + (1/3) ln 6, range [ln 3, ln 6] -> 1/3
    assert mid["entropy_norm"] == pytest.approx(1 / 3)


def test_slots_not_divisible_by_items_raw_fairest_is_not_perfect():
    # n=4, m=3, k=2: S = 6, q = 1, r = 2. Fairest: exposure [2, 2, 1, 1]
    got = measures(lists([0, 1], [2, 3], [0, 1]), n_items=4, k=2)
    # raw Gini: sorted [1, 1, 2, 2] -> (-3 - 1 + 2 + 6) / 24 = 1/6 = r(n-r)/(n·S) -> corrected 0
    assert got["gini"] == pytest.approx(1 / 6) and got["gini_norm"] == pytest.approx(0.0)
    # raw Jain 36 / (4·10) = 0.9 = S² / (n·(n·q² + r·(2q+1))) -> corrected 1
    assert got["jain"] == pytest.approx(0.9) and got["jain_norm"] == pytest.approx(1.0)
    assert got["entropy_norm"] == pytest.approx(1.0)


def test_gini_w_bounds_by_hand():
    w = 1 / np.log2(3)
    # n=4, m=2, k=2, identical lists (a@1, b@2): exposures [2, 2w]; sorted [0, 0, 2w, 2]
    # raw = (2w + 6) / (4·(2 + 2w)) = (3 + w) / (4(1 + w)), the maximum -> corrected 1
    got = measures(lists([0, 1], [0, 1]), n_items=4, k=2)
    assert got["gini_w"] == pytest.approx((3 + w) / (4 * (1 + w)))
    # (a@1, b@2), (b@1, a@2): exposures [1 + w, 1 + w]: sorted [0, 0, 1+w, 1+w]
    # raw = (1 + 3)(1 + w) / (4·2(1 + w)) = 0.5; bounds: min (2 - 2w)/(4(1+w)), max (3 + w)/(4(1+w))
    swapped = measures(lists([0, 1], [1, 0]), n_items=4, k=2)
    lo, hi = (2 - 2 * w) / (4 * (1 + w)), (3 + w) / (4 * (1 + w))
    assert swapped["gini_w"] == pytest.approx(0.5)
    assert swapped["gini_w_norm"] == pytest.approx((0.5 - lo) / (hi - lo))
    # plain counts cannot tell the two apart: both are [2, 2, 0, 0]
    assert swapped["gini_norm"] == pytest.approx(got["gini_norm"])


@pytest.mark.parametrize("n,m,k", [(7, 5, 3), (50, 4, 10), (12, 30, 5), (9, 3, 3)])
def test_achievable_extremes_score_exactly_zero_and_one(n, m, k):
    # round-robin lists spread S slots as evenly as integers allow (counts q or q+1)
    fair = lists(*[[(u * k + j) % n for j in range(k)] for u in range(m)])
    unfair = lists(*[list(range(k)) for _ in range(m)])
    f, u = measures(fair, n, k), measures(unfair, n, k)
    assert f["gini_norm"] == pytest.approx(0.0, abs=1e-9) and u["gini_norm"] == pytest.approx(1.0)
    for name in ("jain_norm", "entropy_norm", "qf_norm"):
        assert f[name] == pytest.approx(1.0) and u[name] == pytest.approx(0.0, abs=1e-9)
    # any other lists land inside [0, 1]
    rng = np.random.default_rng(n * 100 + m)
    mixed = lists(*[list(rng.choice(n, k, replace=False)) for _ in range(m)])
    for name, value in measures(mixed, n, k).items():
        assert -1e-9 <= value <= 1 + 1e-9, (name, value)


def test_raw_measures_on_plain_vectors_and_degenerate_cases():
    assert gini([5.0], 5) == pytest.approx(0.8)  # one item holds everything: (n-1)/n
    assert jain([1.0, 1.0, 1.0], 3) == pytest.approx(1.0)
    assert entropy([1.0], 4) == pytest.approx(0.0)
    # a single list: fairest and unfairest coincide, so there is nothing to normalise against
    assert np.isnan(normalized_gini([1.0, 1.0], 5, n_lists=1, k=2))
    with pytest.raises(ValueError, match="n_items"):
        gini([1.0, 1.0, 1.0], 2)
