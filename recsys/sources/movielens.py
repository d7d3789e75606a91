"""MovieLens readers for every common local layout.

API
---
``open_movielens(path, cache_dir, *, cache_threshold_bytes=64 MiB) -> MovieLensReader``; the layout
is detected from the files in ``path`` (or in its single subfolder, as archives extract):

| layout      | files                                                    | name                     |
|-------------|----------------------------------------------------------|--------------------------|
| ml-100k     | u.data (tab), u.item (pipe, latin-1, 19 genre flags), u.user | movielens-100k       |
| recbole     | <stem>.inter/.item/.user (typed headers, see recbole.py) | movielens-<stem minus ml-> |
| ml-1m       | ratings.dat, movies.dat, users.dat (``::``, latin-1)     | movielens-1m             |
| ml-latest   | ratings.csv (header), movies.csv (quoted titles)         | movielens-<folder minus ml-> |

Interactions: event_type "rate", value = rating (outside [0.5, 5] -> quarantine), session_id null,
source = the reader name. ``items()``: item_id, category_id (index in ``GENRES`` of the item's first
genre; null for none/unknown), title (without the "(1995)" suffix), year Int64, genres (pipe-joined,
"Children's" normalised to "Children"). ``users()``: user_id, age Int64, gender, occupation, zip for
ml-100k/ml-1m/recbole (ml-1m age is its bucket code and occupation its documented name), only
user_id for ml-latest. Ratings files above ``cache_threshold_bytes`` (ml-20m, ml-25m, ml-latest) are
parsed once into a per-day Parquet cache under ``cache_dir``; smaller ones stay in memory.
Bounds: ``plausible_window(day_counts, window)`` (default ``PlausibleWindow()``; keeps every ML-100K
day), rows outside it quarantined as "timestamp_out_of_range: ...".
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recsys.sources import SourceError
from recsys.sources.lines import (
    DayCache,
    Field,
    InMemoryStore,
    LineFormat,
    LineSourceReader,
    PlausibleWindow,
    plausible_window,
    scan_raw_lines,
    source_fingerprint,
)
from recsys.sources.recbole import _header, inter_format, read_atomic

RATING_RANGE = (0.5, 5.0)
GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
# u.item flag order (u.genre); "unknown" carries no category
ML100K_FLAG_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
EXPECTED = (
    "expected ml-100k files u.data/u.item/u.user, RecBole <name>.inter/.item/.user, "
    "ml-1m ratings.dat/movies.dat/users.dat, or ml-latest/ml-25m ratings.csv/movies.csv"
)
_TITLE_YEAR = r"^(.*?)\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$"


def _rating_fields() -> tuple[Field, ...]:
    lo, hi = RATING_RANGE
    return (
        Field("user_id", "id"),
        Field("item_id", "id"),
        Field("value", "float", label="rating", lo=lo, hi=hi),
        Field("ts", "unix_ts", label="timestamp"),
    )


def _text_lines(path: Path, encoding: str) -> pl.Series:
    """Lines of a small metadata file decoded with ``encoding`` (latin-1 for GroupLens files)."""
    lines = pl.Series("line", path.read_bytes().decode(encoding, errors="replace").splitlines(), dtype=pl.Utf8)
    return lines.filter(lines.str.strip_chars() != "")


def _genre_columns(genre_list: pl.Expr) -> list[pl.Expr]:
    """category_id, genres from a List(Utf8) of raw genre names."""
    norm = genre_list.list.eval(pl.element().str.strip_chars().replace({"Children's": "Children"})).list.eval(
        pl.element().filter(pl.element().is_in(list(GENRES)))
    )
    index = {g: i for i, g in enumerate(GENRES)}
    return [
        norm.list.first().replace_strict(index, default=None, return_dtype=pl.Int64).alias("category_id"),
        norm.list.join("|").alias("genres"),
    ]


def _title_year(title: pl.Expr, fallback_year: pl.Expr | None = None) -> list[pl.Expr]:
    year = title.str.extract(_TITLE_YEAR, 2).cast(pl.Int64, strict=False)
    if fallback_year is not None:
        year = pl.coalesce(year, fallback_year)
    clean = pl.coalesce(title.str.extract(_TITLE_YEAR, 1), title.str.strip_chars())
    return [clean.alias("title"), year.alias("year")]


ITEM_COLUMNS = ("item_id", "category_id", "title", "year", "genres")


def _split_text(lines: pl.Series, sep: str, names: list[str]) -> pl.DataFrame:
    parts = pl.col("line").str.split(sep)
    return pl.DataFrame({"line": lines}).select([parts.list.get(j, null_on_oob=True).alias(n) for j, n in enumerate(names)])


def _items_ml100k(path: Path) -> pl.DataFrame:
    flags = [f"g{j}" for j in range(len(ML100K_FLAG_GENRES))]
    raw = _split_text(_text_lines(path, "latin-1"), "|", ["item_id", "title", "release", "video", "url", *flags])
    genre_list = pl.concat_list([pl.when(pl.col(f) == "1").then(pl.lit(g)) for f, g in zip(flags, ML100K_FLAG_GENRES)]).list.drop_nulls()
    return (
        raw.select(
            pl.col("item_id").cast(pl.Int64, strict=False),
            *_title_year(pl.col("title"), pl.col("release").str.slice(-4).cast(pl.Int64, strict=False)),
            *_genre_columns(genre_list),
        )
        .filter(pl.col("item_id").is_not_null())
        .select(ITEM_COLUMNS)
    )


def _items_ml1m(path: Path) -> pl.DataFrame:
    raw = _split_text(_text_lines(path, "latin-1"), "::", ["item_id", "title", "genres_raw"])
    return (
        raw.select(
            pl.col("item_id").cast(pl.Int64, strict=False),
            *_title_year(pl.col("title")),
            *_genre_columns(pl.col("genres_raw").str.split("|")),
        )
        .filter(pl.col("item_id").is_not_null())
        .select(ITEM_COLUMNS)
    )


def _items_csv(path: Path) -> pl.DataFrame:
    raw = pl.read_csv(
        io.BytesIO(path.read_bytes().decode("utf-8", errors="replace").encode()),
        schema_overrides={"movieId": pl.Utf8, "title": pl.Utf8, "genres": pl.Utf8},
    )
    return (
        raw.select(
            pl.col("movieId").cast(pl.Int64, strict=False).alias("item_id"),
            *_title_year(pl.col("title")),
            *_genre_columns(pl.col("genres").str.split("|")),
        )
        .filter(pl.col("item_id").is_not_null())
        .select(ITEM_COLUMNS)
    )


def _items_recbole(path: Path) -> pl.DataFrame:
    raw = read_atomic(path)
    has_title = "movie_title" in raw.columns
    frame = raw.with_columns((pl.col("movie_title").list.join(" ") if has_title else pl.lit(None, dtype=pl.Utf8)).alias("title_raw"))
    year = pl.col("release_year").cast(pl.Int64, strict=False) if "release_year" in raw.columns else None
    genre_list = pl.col("class") if "class" in raw.columns else pl.lit([], dtype=pl.List(pl.Utf8))
    return (
        frame.select(
            pl.col("item_id").cast(pl.Int64, strict=False),
            *_title_year(pl.col("title_raw"), year),
            *_genre_columns(genre_list),
        )
        .filter(pl.col("item_id").is_not_null())
        .select(ITEM_COLUMNS)
    )


USER_COLUMNS = ("user_id", "age", "gender", "occupation", "zip")


def _users_ml100k(path: Path) -> pl.DataFrame:
    raw = _split_text(_text_lines(path, "latin-1"), "|", ["user_id", "age", "gender", "occupation", "zip"])
    return raw.select(
        pl.col("user_id").cast(pl.Int64, strict=False),
        pl.col("age").cast(pl.Int64, strict=False),
        "gender", "occupation", "zip",
    ).filter(pl.col("user_id").is_not_null())  # fmt: skip


def _users_ml1m(path: Path) -> pl.DataFrame:
    raw = _split_text(_text_lines(path, "latin-1"), "::", ["user_id", "gender", "age", "occupation", "zip"])
    occupations = {str(i): name for i, name in enumerate(ML1M_OCCUPATIONS)}
    return raw.select(
        pl.col("user_id").cast(pl.Int64, strict=False),
        pl.col("age").cast(pl.Int64, strict=False),
        "gender",
        pl.col("occupation").replace_strict(occupations, default=None, return_dtype=pl.Utf8),
        "zip",
    ).filter(pl.col("user_id").is_not_null())


def _users_recbole(path: Path) -> pl.DataFrame:
    raw = read_atomic(path)
    rename = {"zip_code": "zip"}
    raw = raw.rename({k: v for k, v in rename.items() if k in raw.columns})
    cols = [pl.col("user_id").cast(pl.Int64, strict=False)]
    if "age" in raw.columns:
        cols.append(pl.col("age").cast(pl.Int64, strict=False))
    cols += [pl.col(c) for c in ("gender", "occupation", "zip") if c in raw.columns]
    return raw.select(cols).filter(pl.col("user_id").is_not_null())


@dataclass(frozen=True)
class Layout:
    kind: str
    name: str
    ratings: Path
    fmt: LineFormat
    header: bool
    items: Callable[[], pl.DataFrame]
    users: Callable[[], pl.DataFrame] | None  # None: only user_id, taken from the ratings


def _require(directory: Path, names: list[str], layout: str) -> list[Path]:
    paths = [directory / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise SourceError(f"{directory}: {layout} layout is missing {missing}; {EXPECTED}")
    return paths


def _name_from_folder(directory: Path, default: str) -> str:
    m = re.match(r"^ml-(.+)$", directory.name)
    return f"movielens-{m.group(1)}" if m else default


def detect_layout(directory: Path) -> Layout:
    """Which MovieLens layout ``directory`` holds; SourceError naming the path if none."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceError(f"{directory}: MovieLens folder not found; {EXPECTED}")
    if (directory / "u.data").is_file():
        data, item, user = _require(directory, ["u.data", "u.item", "u.user"], "ml-100k")
        return Layout("ml-100k", "movielens-100k", data, LineFormat("\t", _rating_fields(), event_type="rate"), False,
                      lambda: _items_ml100k(item), lambda: _users_ml100k(user))  # fmt: skip
    inters = sorted(p for p in directory.glob("*.inter") if p.name.count(".") == 1)
    if inters:
        inter = inters[0]
        stem = inter.stem
        item, user = _require(directory, [f"{stem}.item", f"{stem}.user"], f"RecBole {stem}")
        fmt = inter_format(_header(inter), rating_range=RATING_RANGE, path=inter)
        name = f"movielens-{stem[3:]}" if stem.startswith("ml-") else stem
        return Layout("recbole", name, inter, fmt, True, lambda: _items_recbole(item), lambda: _users_recbole(user))
    if (directory / "ratings.dat").is_file():
        ratings, movies, users = _require(directory, ["ratings.dat", "movies.dat", "users.dat"], "ml-1m")
        return Layout("ml-1m", _name_from_folder(directory, "movielens-1m"), ratings,
                      LineFormat("::", _rating_fields(), event_type="rate"), False,
                      lambda: _items_ml1m(movies), lambda: _users_ml1m(users))  # fmt: skip
    if (directory / "ratings.csv").is_file():
        ratings, movies = _require(directory, ["ratings.csv", "movies.csv"], "ml-latest")
        return Layout("ml-latest", _name_from_folder(directory, "movielens-latest"), ratings,
                      LineFormat(",", _rating_fields(), event_type="rate"), True,
                      lambda: _items_csv(movies), None)  # fmt: skip
    subdirs = [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
    if len(subdirs) == 1:
        return detect_layout(subdirs[0])
    raise SourceError(f"{directory}: no MovieLens files found; {EXPECTED}")


class MovieLensReader(LineSourceReader):
    def __init__(self, layout: Layout, cache_dir: Path, *, cache_threshold_bytes: int = 64 << 20,
                 batch_size: int = 2_000_000, window: PlausibleWindow | None = None,
                 log: Callable[[str], None] | None = None):  # fmt: skip
        self.layout = layout
        lines = scan_raw_lines(layout.ratings, header=layout.header)
        if layout.ratings.stat().st_size > cache_threshold_bytes:
            key = hashlib.sha1(str(layout.ratings.resolve()).encode()).hexdigest()[:10]
            store = DayCache.open_or_build(
                lines, layout.fmt, Path(cache_dir) / f"{layout.name}-{key}",
                source_fingerprint(layout.ratings), batch_size=batch_size, log=log,
            )  # fmt: skip
        else:
            store = InMemoryStore(layout.fmt.parse(lines).collect())
        rule = window or PlausibleWindow()
        super().__init__(layout.name, str(layout.ratings), store, plausible_window(store.day_counts(), rule), rule=rule)
        self._items: pl.DataFrame | None = None
        self._users: pl.DataFrame | None = None

    def items(self) -> pl.DataFrame:
        if self._items is None:
            self._items = self.layout.items().unique("item_id", keep="first", maintain_order=True)
        return self._items

    def users(self) -> pl.DataFrame:
        if self._users is None:
            if self.layout.users is not None:
                self._users = self.layout.users().unique("user_id", keep="first", maintain_order=True)
            else:
                lo, hi = self.bounds
                self._users = (
                    self.store.scan_days(lo, hi).filter(pl.col("reason").is_null()).select("user_id").unique().sort("user_id").collect()
                )
        return self._users


def open_movielens(path: Path, cache_dir: Path, **kwargs) -> MovieLensReader:
    return MovieLensReader(detect_layout(Path(path)), Path(cache_dir), **kwargs)
