"""The promotion gate, as pure functions: what a model is compared with, and the verdict.

A ranker's valid NDCG@10 only means something next to a model measured the same way: the same
dataset, the same split protocol and the same rule for the cut-offs. ``comparison_key`` names
that; the model store looks up the last promoted model with the same (name, *key*), and
``gate_verdict`` compares the two::

    key = comparison_key("movielens-100k", split.params)
    # ("movielens-100k", "temporal", "temporal:window_days=21")
    passed, details = gate_verdict(0.31, baseline=0.33, max_drop=0.10)   # floor 0.297: passes

What is compared: ``holdout_ndcg`` of the ranker's out-of-fold scores of every labelled valid user
(``holdout_scores``), with its standard error over users, against the same numbers stored with the
promoted model. Both come from a few dozen users on a small dataset (ML-100K's temporal valid window:
about 80; the early-stopping slice alone: about 16), so the verdict allows for their noise: a ranker
fails only when it is below the floor by more than ``noise_z`` standard errors of the difference
(``DEFAULT_NOISE_Z`` = 1.645, a one-sided 95% test). A promoted model stored without these numbers is
compared by its early-stopping ``valid_ndcg10`` against the ranker's, with no allowance, as before.

``serving_choice`` picks what ``recommendations`` serves from the rankers of a run.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from recsys.rankers.features import LABEL, per_group_ndcg_at_k

NO_BASELINE = "no comparable promoted model"
# a ranker fails its gate when below the floor by more than this many standard errors of the difference
DEFAULT_NOISE_Z = 1.645


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def cutoff_rule(split_params: dict[str, Any]) -> str:
    """How the split's cut-offs were made, e.g. ``temporal:window_days=21``.

    The rule, not the cut timestamps: a temporal split over more days moves its cuts but is still
    measured the same way. Unknown or incomplete parameters fall back to the protocol spec.
    """
    protocol = split_params.get("protocol")
    if protocol == "temporal" and "window_days" in split_params:
        return f"temporal:window_days={_num(split_params['window_days'])}"
    if protocol == "temporal_quantile" and {"valid_frac", "test_frac"} <= split_params.keys():
        return f"temporal_quantile:valid_frac={_num(split_params['valid_frac'])},test_frac={_num(split_params['test_frac'])}"
    if protocol == "leave_last_out" and "min_interactions" in split_params:
        return f"leave_last_out:min={_num(split_params['min_interactions'])}"
    if protocol == "files" and split_params.get("source"):
        return f"files:{split_params['source']}"
    return str(split_params.get("protocol_spec") or protocol or "unknown")


def comparison_key(dataset: str, split_params: dict[str, Any]) -> tuple[str, str, str]:
    """(dataset, protocol, cutoff_rule): models are compared only within one key."""
    return dataset, str(split_params.get("protocol") or "unknown"), cutoff_rule(split_params)


def holdout_per_user(holdout: pl.DataFrame, k: int = 10) -> pl.DataFrame:
    """user_id, ndcg: NDCG@k (per_group_ndcg_at_k: within each user's candidate list, as LightGBM's) of each
    user of ``holdout`` (user_id, item_id, label, score; a ranker's ``holdout_scores``, every score from a
    model blind to that user's labels) with a positive label, in user order."""
    rows = holdout.filter((pl.col(LABEL) > 0).any().over("user_id")).sort("user_id")
    users = rows["user_id"].unique(maintain_order=True)
    ndcg = per_group_ndcg_at_k(rows["user_id"].to_numpy(), rows[LABEL].to_numpy(), rows["score"].to_numpy(), k)
    return pl.DataFrame({"user_id": users, "ndcg": ndcg})


def holdout_ndcg(holdout: pl.DataFrame | None, k: int = 10) -> dict[str, float | int] | None:
    """The gate's measure of a ranker: the mean of ``holdout_per_user`` and its standard error over users.
    -> {"gate_ndcg10", "gate_ndcg10_se" (from 2 users), "gate_users"}, or None without a labelled user."""
    if holdout is None or LABEL not in holdout.columns or holdout.height == 0:
        return None
    per_user = holdout_per_user(holdout, k)["ndcg"].to_numpy()
    n = len(per_user)
    if n == 0:
        return None
    out: dict[str, float | int] = {"gate_ndcg10": float(per_user.mean()), "gate_users": n}
    if n > 1:  # one user has no spread: no standard error, so the point rule
        out["gate_ndcg10_se"] = float(per_user.std(ddof=1) / math.sqrt(n))
    return out


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def gate_verdict(
    ndcg: float,
    baseline: float | None,
    max_drop: float,
    se: float | None = None,
    baseline_se: float | None = None,
    noise_z: float = DEFAULT_NOISE_Z,
) -> tuple[bool, dict[str, Any]]:
    """Passed when ``ndcg >= floor = baseline * (1 - max_drop)``, or, when both standard errors are given,
    when the shortfall ``floor - ndcg`` is at most ``noise_z * sqrt(se^2 + ((1 - max_drop) * baseline_se)^2)``
    (the two measures are independent: different users, or the same users scored by different models, taken
    as independent, which overstates the noise when they are paired). No baseline passes; a NaN NDCG fails;
    ``noise_z`` 0 is the point rule.

    ``details`` (JSON-able) holds valid_ndcg10, baseline_ndcg10, floor, max_drop, the allowance and a sentence.
    """
    ndcg = float(ndcg)
    floor = None if baseline is None else float(baseline) * (1.0 - max_drop)
    allowance = 0.0
    if floor is not None and noise_z > 0 and _finite(se) and _finite(baseline_se):
        allowance = noise_z * math.sqrt(float(se) ** 2 + ((1.0 - max_drop) * float(baseline_se)) ** 2)
    if math.isnan(ndcg):
        passed, reason = False, "valid NDCG@10 is not a number"
    elif floor is None:
        passed, reason = True, f"valid NDCG@10 {ndcg:.4f}; {NO_BASELINE}"
    else:
        promoted = f"(promoted {baseline:.4f}, max drop {max_drop:.0%})"
        if ndcg >= floor:
            passed, reason = True, f"valid NDCG@10 {ndcg:.4f} at or above the floor {floor:.4f} {promoted}"
        elif allowance > 0:
            passed = floor - ndcg <= allowance
            reason = (
                f"valid NDCG@10 {ndcg:.4f} below the floor {floor:.4f} {promoted} by {floor - ndcg:.4f}, "
                f"{'within' if passed else 'beyond'} the noise allowance {allowance:.4f} ({noise_z:g} SE of the difference)"
            )
        else:
            passed, reason = False, f"valid NDCG@10 {ndcg:.4f} below the floor {floor:.4f} {promoted}"
    details = {
        "valid_ndcg10": None if math.isnan(ndcg) else ndcg,
        "baseline_ndcg10": baseline,
        "floor": floor,
        "max_drop": max_drop,
        "se": float(se) if _finite(se) else None,
        "baseline_se": float(baseline_se) if _finite(baseline_se) else None,
        "noise_allowance": allowance,
        "reason": reason,
    }
    return passed, details


def gate_measures(metrics: dict[str, Any], promoted_metrics: dict[str, Any] | None) -> dict[str, Any]:
    """What the gate compares, like with like: the holdout measure (``holdout_ndcg``'s gate_ndcg10 and its
    SE) of the ranker and of the promoted model when both carry it, else both models' early-stopping
    ``valid_ndcg10`` without standard errors (a promoted model stored before the holdout measure existed).
    -> {"ndcg", "se", "baseline", "baseline_se", "measure"} (baseline None without a promoted model)."""
    promoted_metrics = promoted_metrics or {}
    if _finite(metrics.get("gate_ndcg10")) and (not promoted_metrics or _finite(promoted_metrics.get("gate_ndcg10"))):
        return {
            "ndcg": metrics["gate_ndcg10"],
            "se": metrics.get("gate_ndcg10_se"),
            "baseline": promoted_metrics.get("gate_ndcg10"),
            "baseline_se": promoted_metrics.get("gate_ndcg10_se"),
            "measure": f"held-out NDCG@10 of {metrics.get('gate_users')} labelled valid users (holdout_ndcg)",
        }
    return {
        "ndcg": metrics.get("valid_ndcg10", float("nan")),
        "se": None,
        "baseline": promoted_metrics.get("valid_ndcg10"),
        "baseline_se": None,
        "measure": "early-stopping valid NDCG@10",
    }


def serving_choice(rankers: dict[str, dict[str, Any]]) -> str | None:
    """The ranker to serve: the best valid NDCG@10 among those whose gate passed, else None.

    ``rankers`` maps a name to ``{"gate_passed": bool | None, "valid_ndcg10": float | None}``.
    A ranker never judged (gate_passed None) is not served.
    """
    passed = {name: r.get("valid_ndcg10") or 0.0 for name, r in rankers.items() if r.get("gate_passed") is True}
    return max(passed, key=passed.get) if passed else None


def no_ranker_passed_message(rankers: dict[str, dict[str, Any]]) -> str:
    """One line per ranker: its valid NDCG@10 and the floor it missed (from the gate details)."""
    lines = []
    for name, r in sorted(rankers.items()):
        details = r.get("gate_details") or {}
        ndcg, floor = r.get("valid_ndcg10"), details.get("floor")
        shown = "n/a" if ndcg is None else f"{ndcg:.4f}"
        lines.append(f"{name}: valid NDCG@10 {shown}, floor {'none' if floor is None else f'{floor:.4f}'}")
    return "; ".join(lines) if lines else "no ranker of this run"


def served_from_promoted(served: tuple[str, str], promoted: set[tuple[str, str]]) -> bool:
    """Whether the lists being served, ``(model, model_version)`` of serving.recommendations, come from promoted
    models: a promoted ``(ranker, version)``, or a blend (``blend`` / ``blend+<channel>``, version ``vA+vB``: the
    versions of the rankers it fuses, each promoted when it was served) whose every version is a promoted one."""
    model, version = served
    if (model, version) in promoted:
        return True
    if model == "blend" or model.startswith("blend+"):
        versions = set(version.split("+"))
        return bool(versions) and versions <= {v for _, v in promoted}
    return False
