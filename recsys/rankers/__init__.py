"""Second-stage rankers over the candidate pool.

- ``features``: the ranker frame, one row per (user, candidate) with channel, user, item, user×item
  and OutRank-selected categorical features, computed from history only, plus ``label``
  (sql/features/ranker_history.sql; resources/ranker_frames.py runs it).
- ``lgbm.LGBMRanker``: LightGBM LambdaRank grouped by user, early stopping on held-out users' NDCG@10.
- ``sequence.SequenceRanker``: a small BERT encoder (``transformers``) over the user's recent items,
  scoring every candidate by target attention + MLP, trained with a listwise softmax loss.
"""

from recsys.rankers.features import categorical_columns, feature_columns, grouped_ndcg_at_k, holdout_users
from recsys.rankers.lgbm import LGBMRanker, LGBMRankerParams

__all__ = [
    "categorical_columns",
    "feature_columns",
    "grouped_ndcg_at_k",
    "holdout_users",
    "LGBMRanker",
    "LGBMRankerParams",
]


def __getattr__(name: str):
    # torch/transformers load only when the sequence ranker is actually used.
    if name in ("SequenceRanker", "SequenceRankerParams"):
        from recsys.rankers import sequence

        return getattr(sequence, name)
    raise AttributeError(f"module 'recsys.rankers' has no attribute {name!r}")
