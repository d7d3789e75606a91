"""Offline evaluation of recommendation lists (pure: polars / numpy / scipy, no I/O).

- accuracy: full-ranking HitRate, Recall, Precision, NDCG, MRR, MAP at several K; ``evaluate``
  returns long rows (metric, k, value, n_users), per-user rows for the bootstrap; ``exclude_seen``.
- beyond: catalogue coverage, novelty, intra-list diversity, average recommended popularity.
- fairness: item-exposure Gini / Jain / entropy / QF, raw and corrected (Rampisela et al. 2024).
- stats: bootstrap confidence intervals over users and paired tests between two systems.
- cohorts: all, long-tail users, heavy users, cold items, users without history.
- fallback: the popularity list that completes a stage's recs for users it has no list for.

Definitions and conventions: docs/evaluation.md.
"""

from recsys.metrics.accuracy import (
    DEFAULT_KS,
    DEFAULT_METRICS,
    METRICS,
    evaluate,
    exclude_seen,
    per_user_metrics,
    ranked_positions,
    summarize,
)
from recsys.metrics.beyond import (
    average_popularity,
    beyond_accuracy,
    catalog_coverage,
    intra_list_diversity,
    item_popularity,
    novelty,
)
from recsys.metrics.cohorts import COHORTS, cohort_truth, cohorts, evaluate_cohorts
from recsys.metrics.fairness import (
    entropy,
    exposure,
    gini,
    item_fairness,
    jain,
    normalized_coverage,
    normalized_entropy,
    normalized_gini,
    normalized_jain,
)
from recsys.metrics.fallback import complete_with_popularity, popular_items, popularity_fallback
from recsys.metrics.stats import bootstrap_ci, holm, paired_test

__all__ = [
    "COHORTS",
    "DEFAULT_KS",
    "DEFAULT_METRICS",
    "METRICS",
    "average_popularity",
    "beyond_accuracy",
    "bootstrap_ci",
    "catalog_coverage",
    "cohort_truth",
    "cohorts",
    "complete_with_popularity",
    "entropy",
    "evaluate",
    "evaluate_cohorts",
    "exclude_seen",
    "exposure",
    "gini",
    "item_fairness",
    "item_popularity",
    "intra_list_diversity",
    "jain",
    "normalized_coverage",
    "normalized_entropy",
    "normalized_gini",
    "normalized_jain",
    "novelty",
    "paired_test",
    "holm",
    "per_user_metrics",
    "popular_items",
    "popularity_fallback",
    "ranked_positions",
    "summarize",
]
