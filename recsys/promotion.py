"""The promotion gate, as pure functions: what a model is compared with, and the verdict.

A ranker's valid NDCG@10 only means something next to a model measured the same way: the same
dataset, the same split protocol and the same rule for the cut-offs. ``comparison_key`` names
that; the model store looks up the last promoted model with the same (name, *key*), and
``gate_verdict`` compares the two::

    key = comparison_key("movielens-100k", split.params)
    # ("movielens-100k", "temporal", "temporal:window_days=21")
    passed, details = gate_verdict(0.31, baseline=0.33, max_drop=0.10)   # floor 0.297: passes

``serving_choice`` picks what ``recommendations`` serves from the rankers of a run.
"""

from __future__ import annotations

import math
from typing import Any

NO_BASELINE = "no comparable promoted model"


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


def gate_verdict(ndcg: float, baseline: float | None, max_drop: float) -> tuple[bool, dict[str, Any]]:
    """Passed when ``ndcg >= baseline * (1 - max_drop)``; no baseline passes; a NaN NDCG fails.

    ``details`` (JSON-able) holds valid_ndcg10, baseline_ndcg10, floor, max_drop and a sentence.
    """
    ndcg = float(ndcg)
    floor = None if baseline is None else float(baseline) * (1.0 - max_drop)
    if math.isnan(ndcg):
        passed, reason = False, "valid NDCG@10 is not a number"
    elif floor is None:
        passed, reason = True, f"valid NDCG@10 {ndcg:.4f}; {NO_BASELINE}"
    else:
        passed = ndcg >= floor
        word = "at or above" if passed else "below"
        reason = f"valid NDCG@10 {ndcg:.4f} {word} the floor {floor:.4f} (promoted {baseline:.4f}, max drop {max_drop:.0%})"
    details = {
        "valid_ndcg10": None if math.isnan(ndcg) else ndcg,
        "baseline_ndcg10": baseline,
        "floor": floor,
        "max_drop": max_drop,
        "reason": reason,
    }
    return passed, details


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
