"""Individual item-exposure fairness with the corrected measures of Rampisela et al. (ACM TORS 2024,
"Evaluation Measures of Individual Item Fairness for Recommender Systems: A Critical Study").

API::

    exposure(recs, k, discount=False)      -> item_id, exposure   (exposed items only)
    gini(exposures, n_items)               -> float   raw Gini over all n items (0 = equal)
    jain(exposures, n_items)               -> float   raw Jain index, in [1/n, 1] (1 = equal)
    entropy(exposures, n_items)            -> float   Shannon entropy / log n, in [0, 1] (1 = equal)
    normalized_gini(exposures, n_items, n_lists, k, discount=False)   -> [0, 1], 0 = fairest
    normalized_jain(exposures, n_items, n_lists, k)                   -> [0, 1], 1 = fairest
    normalized_entropy(exposures, n_items, n_lists, k)                -> [0, 1], 1 = fairest
    normalized_coverage(exposures, n_items, n_lists, k)               -> [0, 1], 1 = fairest (QF)
    item_fairness(recs, n_items, ks=(10,)) -> metric, k, value, n_users   (long format)

Why the correction: m lists of k distinct items fill S = m·k slots over n items, and an item can
appear at most once per list. The textbook ranges (Gini in [0, 1], Jain in [1/n, 1], entropy in
[0, 1]) assume any distribution of exposure is possible, but here
- the most unfair achievable outcome is every list showing the same k items (k items with
  exposure m, the rest 0), so Gini cannot exceed 1 − k/n and Jain cannot go below k/n;
- the fairest achievable outcome spreads the slots as evenly as integers allow: with
  q = S div n and r = S mod n, r items get q+1 and n−r get q (when S < n: S items get 1).
  Perfect equality (Gini 0, Jain 1, entropy 1) is reachable only when n divides S.
Each corrected measure min–max rescales the raw value between those two achievable extremes:

    gini_min = r(n−r) / (n·S)                 gini_max = 1 − k/n
    jain_min = k/n                            jain_max = S² / (n·(n·q² + r·(2q+1)))
    ent_min  = log k / log n                  ent_max  = log S / log n                  (S < n)
                                              ent_max  = −[(n−r)·a·log a + r·b·log b] / log n,
                                                         a = q/S, b = (q+1)/S           (S ≥ n)
    qf = #exposed / n,  qf_norm = (#exposed − k) / (min(n, S) − k)

Position-discounted exposure (``discount=True``, weight 1/log2(pos+1)) is defined for the Gini
(Gini-w): the maximum is every list identical, Σ_l (n−2l+1)·w_l / (n·W) with W = Σ_l w_l; the
minimum, when S ≤ n, is every slot on a distinct item, Σ_l (n−(2l−1)·m)·w_l / (n·W); when S > n
it is taken as 0 (the paper's convention; exact equality may then be unreachable, so Gini-w-norm
may stay slightly above 0 for the fairest lists).

Lists shorter than k: S is the actual number of slots and k the longest list (≤ K), with
m = S / k; the bounds are exact when all lists have the same length. Degenerate settings where
fairest and unfairest coincide (a single list, or k ≥ n) return NaN rather than a made-up score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from recsys.metrics.accuracy import ranked_positions

_EPS = 1e-12


def exposure(recs: pl.DataFrame, k: int, discount: bool = False) -> pl.DataFrame:
    """Exposure of each recommended item in the top-k lists: a count, or Σ 1/log2(pos+1)."""
    return _exposure(ranked_positions(recs, k), k, discount)


def _exposure(positions: pl.DataFrame, k: int, discount: bool) -> pl.DataFrame:
    pos = positions.filter(pl.col("pos") <= k)
    total = (1.0 / (pl.col("pos") + 1).cast(pl.Float64).log(2)).sum() if discount else pl.len().cast(pl.Float64)
    return pos.group_by("item_id").agg(total.alias("exposure")).sort("item_id")


def _padded(exposures, n_items: int) -> np.ndarray:
    values = np.asarray(exposures, dtype=np.float64).ravel()
    if len(values) > n_items:
        raise ValueError(f"{len(values)} exposed items but the catalogue has only n_items={n_items}")
    if (values < 0).any():
        raise ValueError("exposures must be non-negative")
    return np.concatenate([values, np.zeros(n_items - len(values))])


def gini(exposures, n_items: int) -> float:
    """Gini = Σ_i (2i − n − 1)·x_(i) / (n·Σx), x sorted ascending over all n items (zeros included)."""
    x = np.sort(_padded(exposures, n_items))
    idx = np.arange(1, n_items + 1)
    return float(((2 * idx - n_items - 1) * x).sum() / (n_items * x.sum()))


def jain(exposures, n_items: int) -> float:
    """Jain = (Σx)² / (n·Σx²)."""
    x = _padded(exposures, n_items)
    return float(x.sum() ** 2 / (n_items * np.square(x).sum()))


def entropy(exposures, n_items: int) -> float:
    """Shannon entropy of the exposure shares, in units of log n (0·log 0 = 0)."""
    x = _padded(exposures, n_items)
    p = x[x > 0] / x.sum()
    return float(-(p * np.log(p)).sum() / np.log(n_items))


def _slots(n_items: int, n_lists: float, k: int) -> tuple[int, int, int]:
    slots = int(round(n_lists * k))
    return slots, slots // n_items, slots % n_items


def _rescale(value: float, fairest: float, unfairest: float, fair_is_one: bool) -> float:
    span = unfairest - fairest
    if abs(span) < _EPS:
        return float("nan")
    scaled = (value - fairest) / span
    scaled = 1.0 - scaled if fair_is_one else scaled
    # float noise at the extremes would otherwise print as -0.0 or 1.0000000000000002
    return float(min(max(scaled, 0.0), 1.0)) if -1e-9 < scaled < 1 + 1e-9 else float(scaled)


def gini_bounds(n_items: int, n_lists: float, k: int, discount: bool = False) -> tuple[float, float]:
    """(fairest, unfairest) achievable Gini for n_lists lists of k distinct items."""
    n, m = n_items, n_lists
    slots, _, r = _slots(n, m, k)
    if not discount:
        return r * (n - r) / (n * slots), 1.0 - k / n
    level = np.arange(1, k + 1)
    w = 1.0 / np.log2(level + 1)
    unfair = float(((n - 2 * level + 1) * w).sum() / (n * w.sum()))
    fair = float(((n - (2 * level - 1) * m) * w).sum() / (n * w.sum())) if slots <= n else 0.0
    return fair, unfair


def jain_bounds(n_items: int, n_lists: float, k: int) -> tuple[float, float]:
    n = n_items
    slots, q, r = _slots(n, n_lists, k)
    return slots**2 / (n * (n * q * q + r * (2 * q + 1))), k / n


def entropy_bounds(n_items: int, n_lists: float, k: int) -> tuple[float, float]:
    n = n_items
    slots, q, r = _slots(n, n_lists, k)
    if slots < n:
        fair = np.log(slots)
    else:
        a, b = q / slots, (q + 1) / slots
        fair = -((n - r) * a * np.log(a) + (r * b * np.log(b) if r else 0.0))
    return float(fair / np.log(n)), float(np.log(k) / np.log(n))


def normalized_gini(exposures, n_items: int, n_lists: float, k: int, discount: bool = False) -> float:
    fair, unfair = gini_bounds(n_items, n_lists, k, discount)
    return _rescale(gini(exposures, n_items), fair, unfair, fair_is_one=False)


def normalized_jain(exposures, n_items: int, n_lists: float, k: int) -> float:
    fair, unfair = jain_bounds(n_items, n_lists, k)
    return _rescale(jain(exposures, n_items), fair, unfair, fair_is_one=True)


def normalized_entropy(exposures, n_items: int, n_lists: float, k: int) -> float:
    fair, unfair = entropy_bounds(n_items, n_lists, k)
    return _rescale(entropy(exposures, n_items), fair, unfair, fair_is_one=True)


def normalized_coverage(exposures, n_items: int, n_lists: float, k: int) -> float:
    """QF corrected: (#exposed − k) / (min(n, S) − k)."""
    exposed = int((np.asarray(exposures) > 0).sum())
    slots, _, _ = _slots(n_items, n_lists, k)
    return _rescale(exposed, min(n_items, slots), k, fair_is_one=True)


def item_fairness(recs: pl.DataFrame, n_items: int, ks: Sequence[int] = (10,)) -> pl.DataFrame:
    """Raw and corrected exposure-fairness measures at each K, as (metric, k, value, n_users)."""
    rows = []
    ks = sorted(set(ks))
    positions = ranked_positions(recs, ks[-1])
    list_lengths = positions.group_by("user_id").len()["len"]
    n_users, max_length = list_lengths.len(), int(list_lengths.max() or 0)
    for k in ks:
        counts = _exposure(positions, k, discount=False)["exposure"].to_numpy()
        weighted = _exposure(positions, k, discount=True)["exposure"].to_numpy()
        # the longest list at this cut: k itself unless every list is shorter
        longest = min(k, max_length)
        if longest == 0:
            continue
        m = counts.sum() / longest
        values = {
            "gini": gini(counts, n_items),
            "gini_norm": normalized_gini(counts, n_items, m, longest),
            "gini_w": gini(weighted, n_items),
            "gini_w_norm": normalized_gini(weighted, n_items, m, longest, discount=True),
            "jain": jain(counts, n_items),
            "jain_norm": normalized_jain(counts, n_items, m, longest),
            "entropy": entropy(counts, n_items),
            "entropy_norm": normalized_entropy(counts, n_items, m, longest),
            "qf": len(counts) / n_items,
            "qf_norm": normalized_coverage(counts, n_items, m, longest),
        }
        rows += [(name, k, value, n_users) for name, value in values.items()]
    schema = {"metric": pl.Utf8, "k": pl.Int32, "value": pl.Float64, "n_users": pl.Int64}
    return pl.DataFrame(rows, schema=schema, orient="row")
