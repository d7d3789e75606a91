"""Content channel with the real packaged MiniLM weights (offline) on handmade titles."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from recsys.channels import content as content_mod  # noqa: E402
from recsys.channels.content import ContentChannel, encode_texts, item_texts  # noqa: E402
from recsys.runtime import TorchRuntime  # noqa: E402
from recsys.schema import INTERACTION_SCHEMA, RECOMMENDATION_SCHEMA, conform  # noqa: E402

RUNTIME = TorchRuntime(device="cpu", threads=1, seed=0, log=lambda msg: None)

TITLES = {
    1: ("Star Wars Episode IV: A New Hope", "Sci-Fi Adventure"),
    2: ("Star Trek: The Wrath of Khan", "Sci-Fi Adventure"),
    3: ("Pride and Prejudice", "Romance Drama"),
    4: ("Sense and Sensibility", "Romance Drama"),
    5: ("Emma", "Romance Comedy"),
    6: ("Alien", "Sci-Fi Horror"),
    7: ("The Empire Strikes Back", "Sci-Fi Adventure"),
    8: ("Toy Story", "Animation Children Comedy"),
    9: ("The Lion King", "Animation Children Musical"),
    10: ("Aladdin", "Animation Children Musical"),
    11: ("The Godfather", "Crime Drama"),
    12: ("Goodfellas", "Crime Drama"),
    13: ("Star Trek: First Contact", "Sci-Fi Adventure"),  # cold: no history
    14: ("Persuasion", "Romance Drama"),  # cold
    15: ("Jurassic Park", "Action Sci-Fi"),
    16: ("Casablanca", "Romance Drama War"),
    17: ("Heat", "Crime Thriller"),
    18: ("Beauty and the Beast", "Animation Musical Romance"),
    19: ("2001: A Space Odyssey", "Sci-Fi"),
    20: ("Little Women", "Romance Drama"),
}


@pytest.fixture(scope="module")
def items():
    ids = sorted(TITLES)
    return pl.DataFrame(
        {
            "item_id": ids,
            "title": [TITLES[i][0] for i in ids],
            "genres": [TITLES[i][1].split(" ") for i in ids],  # list column, joined into the text
        },
        schema={"item_id": pl.Int64, "title": pl.Utf8, "genres": pl.List(pl.Utf8)},
    )


@pytest.fixture(scope="module")
def history():
    # user 1 watches space films, user 2 period romances, user 3 only items outside the catalog
    rows = [(1, 1), (1, 2), (1, 7), (2, 3), (2, 4), (2, 20), (3, 999)]
    t0 = datetime(2024, 1, 1)
    frame = pl.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "item_id": [i for _, i in rows],
            "event_type": ["view"] * len(rows),
            "value": [1.0] * len(rows),
            "ts": [t0 + timedelta(hours=h) for h in range(len(rows))],
            "session_id": pl.Series([None] * len(rows), dtype=pl.Int64),
            "source": ["test"] * len(rows),
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us")), pl.col("ts").dt.date().alias("event_date"))
    return conform(frame, INTERACTION_SCHEMA)


@pytest.fixture(scope="module")
def channel(history, items, tmp_path_factory):
    cache = tmp_path_factory.mktemp("minilm")
    return ContentChannel(cache_dir=cache).fit(history, items, runtime=RUNTIME)


def test_item_text_joins_title_and_genre_list(items):
    texts = item_texts(items)
    assert texts.filter(pl.col("item_id") == 1)["text"].item() == "Star Wars Episode IV: A New Hope Sci-Fi Adventure"


def test_title_neighbours_share_theme(channel):
    emb = dict(zip(channel.items_.ids.tolist(), channel.emb_))
    assert emb[1] @ emb[2] > emb[1] @ emb[3]  # Star Wars closer to Star Trek than to Pride and Prejudice
    np.testing.assert_allclose(np.linalg.norm(channel.emb_, axis=1), 1.0, atol=1e-5)
    nb = channel.item_neighbours(3)
    assert nb.columns == ["item_id", "neighbour_id", "score", "rank"]
    assert nb.filter(pl.col("item_id") == pl.col("neighbour_id")).height == 0
    assert nb.group_by("item_id").len()["len"].to_list() == [3] * len(TITLES)
    space = {1, 2, 6, 7, 13, 15, 19}
    star_trek_nb = set(nb.filter(pl.col("item_id") == 2)["neighbour_id"].to_list())
    assert len(star_trek_nb & space) >= 2
    romance = {3, 4, 5, 14, 16, 18, 20}
    assert set(nb.filter(pl.col("item_id") == 3)["neighbour_id"].to_list()) <= romance


def test_profiles_reach_cold_items_and_fallback(channel):
    recs = channel.recommend([1, 2, 3, 404], k=3)
    assert recs.schema == pl.Schema(RECOMMENDATION_SCHEMA)
    top = {u: recs.filter((pl.col("user_id") == u) & (pl.col("rank") == 1))["item_id"].item() for u in (1, 2)}
    assert top[1] == 13  # cold "Star Trek: First Contact" for the space-film user
    assert top[2] in {5, 14, 16, 18}  # an unseen romance (3, 4, 20 are seen and excluded)
    assert recs.filter(pl.col("user_id") == 1)["item_id"].is_in([1, 2, 7]).sum() == 0
    # a user with no catalog item and an unknown user both get (popularity) rows
    assert recs.filter(pl.col("user_id") == 3).height == 3
    assert recs.filter(pl.col("user_id") == 404).height == 3


def test_embeddings_are_cached_by_content(channel, history, items, monkeypatch):
    files = list(channel.cache_dir.glob(f"{content_mod.SHARD_PREFIX}*.npz"))
    assert len(files) == 1

    def no_model(device):
        raise AssertionError("cache miss: the model was loaded again")

    monkeypatch.setattr(content_mod, "_load_model", no_model)
    again = ContentChannel(cache_dir=channel.cache_dir).fit(history, items, runtime=RUNTIME)
    np.testing.assert_array_equal(again.emb_, channel.emb_)
    with pytest.raises(AssertionError, match="cache miss"):
        encode_texts(["a title never encoded"], RUNTIME, cache_dir=channel.cache_dir)


def test_cache_encodes_only_new_or_changed_texts(tmp_path):
    texts = [f"{TITLES[i][0]} {TITLES[i][1]}" for i in sorted(TITLES)]
    first = encode_texts(texts, RUNTIME, cache_dir=tmp_path)
    edited = list(texts)
    edited[4] = "Emma Romance Comedy Drama"  # one changed text
    edited.insert(7, "Blade Runner Sci-Fi Noir")  # one new text
    edited.append(texts[0])  # a repeat of a cached text
    before = dict(content_mod.ENCODE_STATS)
    second = encode_texts(edited, RUNTIME, cache_dir=tmp_path)
    assert content_mod.ENCODE_STATS["calls"] - before["calls"] == 1
    assert content_mod.ENCODE_STATS["encoded"] - before["encoded"] == 2
    fresh = encode_texts(edited, RUNTIME)  # no cache: every text through the model
    assert second.dtype == np.float32 and second.shape == (len(edited), 384)
    np.testing.assert_allclose(second, fresh, atol=1e-5)
    unchanged = [i for i, t in enumerate(edited) if t in texts]
    np.testing.assert_array_equal(second[unchanged], first[[texts.index(edited[i]) for i in unchanged]])
    assert len(list(tmp_path.glob(f"{content_mod.SHARD_PREFIX}*.npz"))) == 2  # one shard per call that encoded
    before = dict(content_mod.ENCODE_STATS)
    np.testing.assert_array_equal(encode_texts(edited, RUNTIME, cache_dir=tmp_path), second)
    assert content_mod.ENCODE_STATS == before  # all cached: the model is not called


def test_cache_shards_merge_and_leave_no_temporary_files(tmp_path, monkeypatch):
    monkeypatch.setattr(content_mod, "MAX_SHARDS", 2)
    calls = []

    def fake_encode(texts, runtime, batch_size):
        calls.append(list(texts))
        return np.stack([np.full(384, len(t), np.float32) / np.sqrt(384) / len(t) for t in texts])

    monkeypatch.setattr(content_mod, "_encode", fake_encode)
    for i in range(4):
        encode_texts([f"text {j}" for j in range(i + 2)], cache_dir=tmp_path)
    assert calls == [["text 0", "text 1"], ["text 2"], ["text 3"], ["text 4"]]
    shards = sorted(p.name for p in tmp_path.iterdir())
    assert len(shards) <= 2 and all(n.startswith(content_mod.SHARD_PREFIX) for n in shards)  # merged, no .tmp left
    out = encode_texts([f"text {j}" for j in range(5)], cache_dir=tmp_path)
    assert len(calls) == 4 and out.shape == (5, 384)


def test_missing_titles_is_a_clear_error(history):
    with pytest.raises(ValueError, match="title"):
        ContentChannel().fit(history, pl.DataFrame({"item_id": [1]}))


def test_catalogue_budget_keeps_cold_items_and_the_most_interacted_ones():
    import datetime as dt

    from recsys.channels.content import budget_catalogue

    texts = pl.DataFrame({"item_id": list(range(10)), "text": [f"t{i}" for i in range(10)]})
    t0 = dt.datetime(2024, 1, 1)
    # items 0..5 have 1..6 events, 6..9 are cold
    hist_items = [i for i in range(6) for _ in range(i + 1)]
    history = pl.DataFrame({"user_id": [1] * len(hist_items), "item_id": hist_items, "ts": [t0] * len(hist_items)})
    assert budget_catalogue(texts, history, None).equals(texts) and budget_catalogue(texts, history, 10).equals(texts)
    kept = budget_catalogue(texts, history, 6)["item_id"].to_list()
    assert kept == [3, 4, 5, 6, 7, 8]  # 3 cold items (half the budget) + the 3 most interacted, in the given order
    assert budget_catalogue(texts, history.filter(pl.col("item_id") < 2), 4)["item_id"].to_list() == [0, 1, 2, 3]
