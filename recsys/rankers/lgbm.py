"""LightGBM LambdaRank over the ranker frame, grouped by user.

API::

    ranker = LGBMRanker(LGBMRankerParams(...)).fit(frame, feature_cols=None, categorical_cols=None, log=print)
    ranker.predict(frame) -> np.ndarray                    # one score per row, frame order
    ranker.recommend(frame, k) -> pl.DataFrame             # user_id, item_id, score, rank (1 = best)
    ranker.feature_importance() -> pl.DataFrame            # feature, gain, split (by gain, descending)
    ranker.best_iteration, ranker.valid_ndcg10             # early-stopping round and its NDCG@eval_at
    ranker.to_bytes() / LGBMRanker.from_bytes(blob)        # model_to_string + metadata, as JSON
    fit_feature_sets(frame, {"mi": cols_a, "3mr": cols_b}, base_params={}, params_grid=[{}], log=None)
        -> FeatureSetChoice(model, params, selection, tried, scores)   # best (feature list × setting) on held-out valid users

``frame`` is ``build_ranker_frame``'s output (user_id, item_id, feature columns, ``label`` for fit).
Feature columns default to every column but ids and label; ``cat__*`` columns are categorical.

Training. Users without a positive label are dropped: every pair in their list has the same
label, so LambdaRank's pairwise gradients are zero and they would only dilute the group count and
the validation NDCG. The remaining users are split by a seeded hash of user_id
(``valid_fraction``, default 20%) into training and early-stopping users; LightGBM stops when
NDCG@``eval_at`` on the held-out users has not improved for ``early_stopping_rounds``. With fewer
than ``min_valid_users`` held-out users it trains ``n_estimators`` rounds without early stopping
and ``valid_ndcg10`` is NaN. Rows are sorted by user so groups are contiguous. With at most
``oof_max_users`` labelled users, ``holdout_scores`` (user_id, item_id, label, score: what the final-stage
guard and the promotion gate read) covers every one of them out of fold (``out_of_fold``: each other hash
slice scored by a model trained without it), so both read all labelled users instead of one fifth.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import lightgbm as lgb
import numpy as np
import polars as pl

from recsys.rankers.features import LABEL, categorical_columns, feature_columns, holdout_users, user_slices
from recsys.schema import RECOMMENDATION_SCHEMA


@dataclass(frozen=True)
class LGBMRankerParams:
    n_estimators: int = 500
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    # Only the head of each list matters for NDCG@10; truncating pairs speeds up long pools.
    lambdarank_truncation_level: int = 30
    eval_at: int = 10
    early_stopping_rounds: int = 50
    valid_fraction: float = 0.2
    min_valid_users: int = 5
    seed: int = 0
    # OpenMP threads spin on busy shared cores (10x slower on a loaded 2-core box); raise on dedicated hosts.
    num_threads: int = 1
    # After early stopping picks the round count, refit on every labelled user (the early-stopping
    # slice included) for that many rounds: with few label users (ML-100K's temporal valid window
    # has ~80) the 20% slice is too much data to leave out. valid_ndcg10 stays the held-out score.
    refit_full: bool = True
    # With at most this many labelled users, holdout_scores covers all of them, out of fold (``out_of_fold``):
    # the final-stage guard then compares the candidates on every labelled valid user, not on the 20% slice
    # (ML-100K's temporal valid window: about 17 users instead of about 80). Above it, or at 0, the slice only.
    oof_max_users: int = 2000
    extra: dict = field(default_factory=dict)  # any other LightGBM parameter, passed through

    def lgb_params(self) -> dict:
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [self.eval_at],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "lambdarank_truncation_level": self.lambdarank_truncation_level,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
            **self.extra,
        }


def _matrix(frame: pl.DataFrame, cols: Sequence[str]) -> np.ndarray:
    """Float64 matrix with nulls as NaN (LightGBM's missing value)."""
    return frame.select([pl.col(c).cast(pl.Float64).fill_null(np.nan) for c in cols]).to_numpy()


def _group_sizes(user_ids: np.ndarray) -> np.ndarray:
    """Sizes of the runs of equal ids, in row order: one query group per contiguous user (the frames are
    sorted by user; stacked windows' rows follow, each (window, user) its own run, recsys.rankers.stacking)."""
    user_ids = np.asarray(user_ids)
    if len(user_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]])
    return np.diff(np.r_[starts, len(user_ids)])


def _with_extra(part: pl.DataFrame, extra: pl.DataFrame | None) -> pl.DataFrame:
    """``part``'s rows, then the stacked windows' rows (training sides only; never scored or held out)."""
    return part if extra is None or extra.height == 0 else pl.concat([part, extra.select(part.columns)], how="vertical")


def _dataset(part: pl.DataFrame, cols: Sequence[str], cats: Sequence[str], reference: lgb.Dataset | None = None) -> lgb.Dataset:
    """LightGBM's dataset of ``part`` (sorted by user): one query group per user."""
    return lgb.Dataset(
        _matrix(part, cols),
        label=part[LABEL].to_numpy(),
        group=_group_sizes(part["user_id"].to_numpy()),
        feature_name=list(cols),
        categorical_feature=list(cats),
        reference=reference,
        free_raw_data=True,
    )


def _labelled_users(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows of the users with a positive label, sorted by user then item (contiguous query groups)."""
    return frame.filter((pl.col(LABEL) > 0).any().over("user_id")).sort("user_id", "item_id")


def rank_frame(frame: pl.DataFrame, scores: np.ndarray, k: int) -> pl.DataFrame:
    """Top-k per user by score (ties by item_id) as a recommendation frame."""
    scored = frame.select("user_id", "item_id").with_columns(pl.Series("score", np.asarray(scores, dtype=np.float64)))
    return (
        scored.sort(["user_id", "score", "item_id"], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("user_id").alias("rank"))
        .filter(pl.col("rank") <= k)
        .select([pl.col(c).cast(t) for c, t in RECOMMENDATION_SCHEMA.items()])
    )


class LGBMRanker:
    def __init__(self, params: LGBMRankerParams | None = None):
        self.params = params or LGBMRankerParams()
        self.booster: lgb.Booster | None = None
        self.feature_cols: list[str] = []
        self.categorical_cols: list[str] = []
        self.best_iteration: int = 0
        self.valid_ndcg10: float = float("nan")
        self.holdout_scores: pl.DataFrame | None = None  # user_id, item_id, label, score of the held-out valid users
        self.n_train_users: int = 0
        self.n_valid_users: int = 0
        self._refit_pending = False  # fit(refit=False) leaves the refit_full step to refit_on
        self._oof_pending = False  # and the out-of-fold scores to out_of_fold
        self.n_oof_users: int = 0  # labelled users scored out of fold beyond the early-stopping slice
        self._extra: pl.DataFrame | None = None  # stacked earlier windows' rows, training sides only (fit's extra_train)
        self.n_extra_lists: int = 0  # their (window, user) lists

    def fit(
        self,
        frame: pl.DataFrame,
        feature_cols: Sequence[str] | None = None,
        categorical_cols: Sequence[str] | None = None,
        log: Callable[[str], None] | None = None,
        refit: bool = True,
        extra_train: pl.DataFrame | None = None,
    ) -> LGBMRanker:
        """Fit on ``frame``; with ``refit`` False the ``refit_full`` step is left to ``refit_on``
        (``fit_feature_sets`` fits every candidate without it and refits only the winner).

        ``extra_train``: earlier cut-offs' labelled lists shaped like ``frame`` (``stacking.stacked_rows``),
        added to the training side of every fit (this one, ``out_of_fold``'s, ``refit_on``'s) and never held
        out or scored: early stopping, ``valid_ndcg10`` and ``holdout_scores`` read ``frame``'s users only."""
        if LABEL not in frame.columns:
            raise ValueError("fit needs a 'label' column (build_ranker_frame(..., target=...))")
        p = self.params
        self._extra = extra_train if extra_train is not None and extra_train.height else None
        self.n_extra_lists = 0 if self._extra is None else len(_group_sizes(self._extra["user_id"].to_numpy()))
        self.feature_cols = list(feature_cols) if feature_cols is not None else feature_columns(frame)
        cats = categorical_cols if categorical_cols is not None else categorical_columns(frame)
        self.categorical_cols = [c for c in cats if c in self.feature_cols]
        missing = [c for c in self.feature_cols if c not in frame.columns]
        if missing:
            raise ValueError(f"frame lacks feature columns {missing}")

        with_pos = _labelled_users(frame)
        if with_pos.height == 0:
            raise ValueError("no user in the frame has a positive label; nothing to learn")
        users = with_pos["user_id"].unique().sort().to_numpy()
        valid_users = users[holdout_users(users, p.valid_fraction, p.seed)]
        use_valid = len(valid_users) >= p.min_valid_users and len(valid_users) < len(users)
        is_valid = with_pos["user_id"].is_in(valid_users).to_numpy() if use_valid else np.zeros(with_pos.height, bool)
        train, valid = with_pos.filter(~pl.Series(is_valid)), with_pos.filter(pl.Series(is_valid))
        self.n_train_users, self.n_valid_users = train["user_id"].n_unique(), (valid["user_id"].n_unique() if use_valid else 0)

        dtrain = _dataset(_with_extra(train, self._extra), self.feature_cols, self.categorical_cols)
        callbacks, valid_sets, valid_names = [], [], []
        if use_valid:
            valid_sets, valid_names = [_dataset(valid, self.feature_cols, self.categorical_cols, reference=dtrain)], ["valid"]
            callbacks.append(lgb.early_stopping(p.early_stopping_rounds, first_metric_only=True, verbose=False))
        if log is not None and use_valid:
            callbacks.append(_log_every(log, 50))
        self.booster = lgb.train(
            p.lgb_params(), dtrain, num_boost_round=p.n_estimators, valid_sets=valid_sets, valid_names=valid_names, callbacks=callbacks
        )
        if use_valid:
            self.best_iteration = int(self.booster.best_iteration) or self.booster.current_iteration()
            self.valid_ndcg10 = float(self.booster.best_score["valid"][f"ndcg@{p.eval_at}"])
        else:
            self.best_iteration = self.booster.current_iteration()
            self.valid_ndcg10 = float("nan")
        # the early-stopping model's scores of the held-out users (before any refit has seen their
        # labels): what the final-stage guard compares with the channels on the same users
        self.holdout_scores = (
            valid.select("user_id", "item_id", LABEL).with_columns(
                pl.Series("score", self.booster.predict(_matrix(valid, self.feature_cols), num_iteration=self.best_iteration))
            )
            if use_valid
            else None
        )
        self._refit_pending = use_valid and p.refit_full
        self._oof_pending = use_valid and len(users) <= p.oof_max_users
        if refit:
            self.out_of_fold(frame)
            self.refit_on(frame)
        if log is not None:
            log(
                f"lgbm_ranker: {self.n_train_users} train users (+{self.n_extra_lists} lists of earlier windows), "
                f"{self.n_valid_users} early-stopping users "
                f"(+{self.n_oof_users} scored out of fold), "
                f"best_iteration={self.best_iteration}, valid ndcg@{p.eval_at}={self.valid_ndcg10:.4f}"
            )
        return self

    def out_of_fold(self, frame: pl.DataFrame) -> LGBMRanker:
        """With at most ``oof_max_users`` labelled users in ``frame`` (the frame ``fit`` was given), extend
        ``holdout_scores`` from the early-stopping slice to every labelled user: the same seeded hash cut
        into ceil(1 / valid_fraction) slices (``user_slices``; slice 0 is the early-stopping slice, scored
        by the early-stopping model), and each other slice scored by a model of the same settings trained
        on every other labelled user for the early-stopping round count. No user is scored by a model that
        saw its labels. The served model is not changed. Only once, after a fit with early stopping."""
        if not self._oof_pending:
            return self
        p = self.params
        with_pos = _labelled_users(frame)
        slices = user_slices(with_pos["user_id"].to_numpy(), p.valid_fraction, p.seed)
        parts = [self.holdout_scores]
        for part in range(1, int(slices.max()) + 1):
            out = pl.Series(slices == part)
            scored = with_pos.filter(out)
            if scored.height == 0:
                continue
            data = _dataset(_with_extra(with_pos.filter(~out), self._extra), self.feature_cols, self.categorical_cols)
            booster = lgb.train(p.lgb_params(), data, num_boost_round=max(1, self.best_iteration))
            parts.append(
                scored.select("user_id", "item_id", LABEL).with_columns(
                    pl.Series("score", booster.predict(_matrix(scored, self.feature_cols)))
                )
            )
            self.n_oof_users += scored["user_id"].n_unique()
        self.holdout_scores = pl.concat(parts)
        self._oof_pending = False
        return self

    def refit_on(self, frame: pl.DataFrame) -> LGBMRanker:
        """``refit_full``: retrain on every labelled user of ``frame`` (the frame ``fit`` was given, the
        early-stopping slice included) for the early-stopping round count. Only once, and only after a
        fit that used early stopping with ``refit_full`` set; otherwise nothing to do."""
        if not self._refit_pending:
            return self
        data = _dataset(_with_extra(_labelled_users(frame), self._extra), self.feature_cols, self.categorical_cols)
        self.booster = lgb.train(self.params.lgb_params(), data, num_boost_round=max(1, self.best_iteration))
        self.best_iteration = self.booster.current_iteration()
        self._refit_pending = False
        if not self._oof_pending:
            self._extra = None  # every fit that trains on it is done
        return self

    def _require(self) -> lgb.Booster:
        if self.booster is None:
            raise RuntimeError("LGBMRanker is not fitted")
        return self.booster

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        booster = self._require()
        missing = [c for c in self.feature_cols if c not in frame.columns]
        if missing:
            raise ValueError(f"frame lacks feature columns the model was trained on: {missing}")
        if frame.height == 0:
            return np.empty(0, dtype=np.float64)
        return booster.predict(_matrix(frame, self.feature_cols), num_iteration=self.best_iteration)

    def recommend(self, frame: pl.DataFrame, k: int) -> pl.DataFrame:
        return rank_frame(frame, self.predict(frame), k)

    def feature_importance(self) -> pl.DataFrame:
        booster = self._require()
        return pl.DataFrame(
            {
                "feature": booster.feature_name(),
                "gain": booster.feature_importance("gain", iteration=self.best_iteration).astype(np.float64),
                "split": booster.feature_importance("split", iteration=self.best_iteration).astype(np.int64),
            }
        ).sort(["gain", "feature"], descending=[True, False])

    def to_bytes(self) -> bytes:
        booster = self._require()
        meta = {
            "params": asdict(self.params),
            "feature_cols": self.feature_cols,
            "categorical_cols": self.categorical_cols,
            "best_iteration": self.best_iteration,
            "valid_ndcg10": None if np.isnan(self.valid_ndcg10) else self.valid_ndcg10,
            "n_train_users": self.n_train_users,
            "n_valid_users": self.n_valid_users,
        }
        return json.dumps({"meta": meta, "model": booster.model_to_string()}).encode("utf-8")

    @classmethod
    def from_bytes(cls, blob: bytes) -> LGBMRanker:
        payload = json.loads(blob.decode("utf-8"))
        meta = payload["meta"]
        ranker = cls(LGBMRankerParams(**meta["params"]))
        ranker.booster = lgb.Booster(model_str=payload["model"])
        ranker.feature_cols = meta["feature_cols"]
        ranker.categorical_cols = meta["categorical_cols"]
        ranker.best_iteration = meta["best_iteration"]
        ranker.valid_ndcg10 = float("nan") if meta["valid_ndcg10"] is None else meta["valid_ndcg10"]
        ranker.n_train_users = meta["n_train_users"]
        ranker.n_valid_users = meta["n_valid_users"]
        return ranker


@dataclass
class FeatureSetChoice:
    model: LGBMRanker  # the winner, fitted
    params: LGBMRankerParams
    selection: str  # name of the winning feature list
    tried: pl.DataFrame  # selection, setting, n_features, valid_ndcg10: every fit
    scores: dict[str, float]  # per feature list, its best held-out valid NDCG@10 over the settings


def _score(model: LGBMRanker) -> float:
    return -np.inf if np.isnan(model.valid_ndcg10) else model.valid_ndcg10


def fit_feature_sets(
    frame: pl.DataFrame,
    feature_sets: dict[str, Sequence[str]],
    base_params: dict | None = None,
    params_grid: Sequence[dict] = ({},),
    log: Callable[[str], None] | None = None,
    extra_train: pl.DataFrame | None = None,
) -> FeatureSetChoice:
    """Fit one model per (feature list, setting) and keep the best held-out valid NDCG@10.

    Every fit splits the same users the same way (``holdout_users`` by seed), so the scores are
    comparable (``extra_train``, stacked earlier windows, joins every fit's training side alike). Ties go to
    the earlier feature list, then the earlier setting. Two lists with the
    same columns are fitted once (the second list gets the first's scores). The candidates are
    compared on their early-stopping models; only the winner gets the out-of-fold scores and the ``refit_full`` retraining
    (the same model a refit of every candidate would have picked, at one refit instead of one per fit)."""
    if not feature_sets:
        raise ValueError("fit_feature_sets needs at least one feature list")
    grid = list(params_grid) or [{}]
    fitted: dict[tuple[str, ...], list[tuple[LGBMRanker, LGBMRankerParams]]] = {}
    rows, best = [], None
    for name, cols in feature_sets.items():
        key = tuple(cols)
        if key not in fitted:
            fitted[key] = []
            for extra in grid:
                params = LGBMRankerParams(**{**(base_params or {}), **extra})
                fitted[key].append(
                    (LGBMRanker(params).fit(frame, feature_cols=list(cols), log=log, refit=False, extra_train=extra_train), params)
                )
        for extra, (model, params) in zip(grid, fitted[key]):
            rows.append({"selection": name, "setting": str(extra), "n_features": len(cols), "valid_ndcg10": model.valid_ndcg10})
            if best is None or _score(model) > _score(best[0]):
                best = (model, params, name)
    tried = pl.DataFrame(rows, schema={"selection": pl.Utf8, "setting": pl.Utf8, "n_features": pl.Int64, "valid_ndcg10": pl.Float64})
    scores = {}
    for name in feature_sets:
        values = [v for v in tried.filter(pl.col("selection") == name)["valid_ndcg10"].to_list() if not np.isnan(v)]
        scores[name] = max(values) if values else float("nan")
    model, params, name = best
    model.out_of_fold(frame)
    model.refit_on(frame)
    return FeatureSetChoice(model=model, params=params, selection=name, tried=tried, scores=scores)


def _log_every(log: Callable[[str], None], period: int):
    def callback(env) -> None:
        if (env.iteration + 1) % period == 0 and env.evaluation_result_list:
            _, metric, value, _ = env.evaluation_result_list[0]
            log(f"lgbm_ranker: iteration {env.iteration + 1} valid {metric}={value:.4f}")

    callback.order = 30
    return callback
