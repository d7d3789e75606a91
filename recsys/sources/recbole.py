"""RecBole atomic files (``.inter``, ``.item``, ``.user``): tab-separated with typed headers.

API
---
- ``read_atomic(path) -> pl.DataFrame``: one column per header field, named without its type;
  ``token`` -> Utf8, ``float`` -> Float64, ``token_seq`` -> List(Utf8) (space-separated),
  ``float_seq`` -> List(Float64). An unparsable float raises ``SourceError`` naming file, column, line.
- ``inter_format(header, rating_range=None) -> LineFormat``: the validating line format of an
  ``.inter`` file (user_id/item_id tokens must be non-negative integers, ``rating:float`` becomes
  event_type "rate" with value = rating, otherwise event_type "view" with value 1.0,
  ``timestamp:float`` is unix seconds; other columns are carried unchecked).
- ``parse_inter(path, source_name, rating_range=None) -> pl.DataFrame``: LineFormat.parse output.
- ``open_benchmark_split(dir, name=None) -> BenchmarkSplit`` for the ``files`` protocol:
  ``<dir>/<name>.train.inter``, ``.valid.inter``, ``.test.inter`` (required) and ``<name>.item``,
  ``<name>.user`` (optional catalogue). ``BenchmarkSplit.parts`` maps "train"/"valid"/"test" to a
  ``ParsedBatch`` (bad lines quarantined by the same ``LineFormat`` checks as every source);
  ``label`` is the folder's name (the dataset label); ``file_counts()`` gives read = loaded +
  quarantined per file; ``quarantine()`` the rows for ``quality.quarantine`` (partition
  ``split:<fold>``: split lines belong to no day partition); ``check_bad_share(max_share)`` and
  ``check_catalogue(items, users)`` raise ``SourceError`` naming the file or folder.
  ``seq`` of a loaded row is its line number in the concatenation train, valid, test (the train
  file's own line number; valid and test lines follow the preceding files' last line), so the
  canonical order (ts, seq) keeps RecBole's train -> valid -> test order when timestamps tie.
  There is no declared date range: rows load whatever their day. Non-integer tokens (e.g. Amazon
  ASINs) quarantine: map them first.
- ``read_benchmark_split(dir, name=None) -> dict[str, ParsedBatch]``: ``open_benchmark_split(...).parts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recsys.sources import ParsedBatch, SourceError
from recsys.sources.lines import Field, LineFormat, finalize, route, scan_raw_lines

ATOMIC_TYPES = ("token", "float", "token_seq", "float_seq")
SPLITS = ("train", "valid", "test")
SPLIT_PARTITION_PREFIX = "split:"  # quality.quarantine partition of split-file lines: split:<fold>


def _header(path: Path) -> list[tuple[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: RecBole atomic file not found")
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline().rstrip("\r\n")
    fields = []
    for col in first.split("\t"):
        name, _, kind = col.partition(":")
        if kind not in ATOMIC_TYPES:
            raise SourceError(f"{path}: header field {col!r} is not name:type with type in {'|'.join(ATOMIC_TYPES)}")
        fields.append((name, kind))
    return fields


def read_atomic(path: Path) -> pl.DataFrame:
    """Typed frame of a RecBole atomic file (see module docstring)."""
    path = Path(path)
    header = _header(path)
    lines = scan_raw_lines(path, header=True).filter(pl.col("raw_line").is_not_null())
    parts = pl.col("raw_line").str.split("\t")
    frame = lines.select("line_no", *[parts.list.get(j, null_on_oob=True).alias(name) for j, (name, _) in enumerate(header)]).collect()
    out = []
    for name, kind in header:
        col = pl.col(name)
        if kind == "float":
            out.append(col.str.strip_chars().cast(pl.Float64, strict=False))
        elif kind == "token_seq":
            out.append(col.str.strip_chars().str.split(" ").list.eval(pl.element().filter(pl.element() != "")))
        elif kind == "float_seq":
            tokens = col.str.strip_chars().str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
            out.append(tokens.list.eval(pl.element().cast(pl.Float64, strict=False)))
        else:
            out.append(col)
    typed = frame.with_columns(out)
    for name, kind in header:
        if kind == "float":
            bad = frame.filter(typed[name].is_null() & frame[name].str.strip_chars().ne(""))
            if bad.height:
                raise SourceError(f"{path}: line {bad['line_no'][0]}: column {name}:float value {bad[name][0]!r} is not a number")
    return typed.drop("line_no")


def inter_format(
    header: list[tuple[str, str]],
    *,
    rating_range: tuple[float, float] | None = None,
    path: Path | None = None,
) -> LineFormat:
    names = [n for n, _ in header]
    for need in ("user_id", "item_id", "timestamp"):
        if need not in names:
            raise SourceError(
                f"{path}: .inter header {names} lacks {need}; expected user_id:token item_id:token [rating:float] timestamp:float"
            )
    fields = []
    for name, _kind in header:
        if name in ("user_id", "item_id"):
            fields.append(Field(name, "id"))
        elif name == "rating":
            lo, hi = rating_range if rating_range else (None, None)
            fields.append(Field("value", "float", label="rating", lo=lo, hi=hi))
        elif name == "timestamp":
            fields.append(Field("ts", "unix_ts", label="timestamp"))
        else:
            fields.append(Field(f"extra_{name}", "any"))
    has_rating = "rating" in names
    if has_rating:
        return LineFormat("\t", tuple(fields), event_type="rate")
    return LineFormat("\t", tuple(fields), event_type="view", value=1.0)


def parse_inter(path: Path, *, rating_range: tuple[float, float] | None = None) -> pl.LazyFrame:
    path = Path(path)
    fmt = inter_format(_header(path), rating_range=rating_range, path=path)
    return fmt.parse(scan_raw_lines(path, header=True))


@dataclass
class BenchmarkSplit:
    """A RecBole benchmark split folder, parsed (see module docstring)."""

    directory: Path
    name: str  # file stem: <name>.train.inter
    paths: dict[str, Path]  # "train" / "valid" / "test" -> .inter file
    parts: dict[str, ParsedBatch]
    item_file: Path | None
    user_file: Path | None

    @property
    def label(self) -> str:
        """The dataset label: the folder's name (``ml-100k`` for ``.../ml-100k/ml-100k.train.inter``)."""
        return self.directory.resolve().name or self.name

    def file_counts(self) -> pl.DataFrame:
        """fold, file, n_read, n_loaded, n_quarantined, share (n_read == n_loaded + n_quarantined)."""
        rows = [
            (
                fold,
                self.paths[fold].name,
                b.n_read,
                b.interactions.height,
                b.quarantine.height,
                b.quarantine.height / b.n_read if b.n_read else 0.0,
            )
            for fold, b in self.parts.items()
        ]
        schema = {
            "fold": pl.Utf8,
            "file": pl.Utf8,
            "n_read": pl.Int64,
            "n_loaded": pl.Int64,
            "n_quarantined": pl.Int64,
            "share": pl.Float64,
        }
        return pl.DataFrame(rows, schema=schema, orient="row")

    def quarantine(self) -> pl.DataFrame:
        """Every quarantined line (QUARANTINE_SCHEMA) with partition ``split:<fold>``."""
        return pl.concat(
            [b.quarantine.with_columns(pl.lit(f"{SPLIT_PARTITION_PREFIX}{fold}").alias("partition")) for fold, b in self.parts.items()],
            how="vertical",
        )

    def check_bad_share(self, max_share: float) -> None:
        """SourceError naming each split file whose quarantined share of lines exceeds ``max_share``."""
        bad = self.file_counts().filter(pl.col("share") > max_share)
        if bad.is_empty():
            return
        problems = []
        for fold, _file, n_read, _loaded, n_bad, share in bad.iter_rows():
            q = self.parts[fold].quarantine.head(3)
            examples = "; ".join(f"line {n}: {r}" for n, r in zip(q["line_no"], q["reason"]))
            problems.append(f"{self.paths[fold]}: {n_bad} of {n_read} lines quarantined ({share:.2%}), e.g. {examples}")
        raise SourceError(f"split files over the {max_share:.2%} bad-line maximum: " + " | ".join(problems))

    def catalogue_ids(self) -> dict[str, pl.Series]:
        """Integer ids of the folder's own catalogue: {"item_id": ...} from .item, {"user_id": ...} from .user."""
        out = {}
        for key, path in (("item_id", self.item_file), ("user_id", self.user_file)):
            if path is not None:
                frame = read_atomic(path)
                if key not in frame.columns:
                    raise SourceError(f"{path}: header has no {key} column")
                out[key] = frame[key].str.strip_chars().cast(pl.Int64, strict=False).drop_nulls().unique()
        return out

    def check_catalogue(self, known_items: pl.Series, known_users: pl.Series) -> None:
        """When the folder ships ``<name>.item`` / ``<name>.user``: every id of the split files and of
        those catalogue files must be in ``known_items`` / ``known_users`` (the warehouse's raw.items /
        raw.users, loaded from RECDAG_DATASET); otherwise SourceError naming the folder, the missing
        count and an example id."""
        own = self.catalogue_ids()
        loaded = pl.concat([b.interactions.select("user_id", "item_id") for b in self.parts.values()], how="vertical")
        problems = []
        for key, known, table, path in (
            ("item_id", known_items, "raw.items", self.item_file),
            ("user_id", known_users, "raw.users", self.user_file),
        ):
            if key not in own:
                continue
            ids = pl.concat([loaded[key], own[key]]).unique()
            missing = ids.filter(~ids.is_in(known.cast(pl.Int64).implode())).sort()
            if missing.len():
                problems.append(f"{missing.len()} {key}s of the split files and {path.name} are not in {table} (e.g. {key} {missing[0]})")
        if problems:
            raise SourceError(
                f"{self.directory}: the split folder ships its own catalogue, but the warehouse's catalogue "
                f"(from RECDAG_DATASET) does not match it: {'; '.join(problems)}. "
                f"Set RECDAG_DATASET=movielens:{self.directory} (with {self.name}.inter beside the split files) "
                "and re-run ingestion, so raw.items / raw.users come from this folder"
            )


def open_benchmark_split(directory: Path, name: str | None = None) -> BenchmarkSplit:
    """Parse a RecBole benchmark split folder (``files`` protocol; see module docstring)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceError(f"{directory}: benchmark split folder not found; expected <name>.train.inter/.valid.inter/.test.inter")
    if name is None:
        found = sorted(directory.glob("*.train.inter"))
        if len(found) != 1:
            raise SourceError(
                f"{directory}: expected exactly one <name>.train.inter with .valid.inter/.test.inter, found {[p.name for p in found]}"
            )
        name = found[0].name[: -len(".train.inter")]
    paths = {s: directory / f"{name}.{s}.inter" for s in SPLITS}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise SourceError(f"{directory}: missing {missing}; expected {name}.train.inter/.valid.inter/.test.inter")
    parts, offset = {}, 0
    for split, path in paths.items():
        routed = route(parse_inter(path), None).collect()
        batch = finalize(routed, source_name=name, source_path=str(path))
        # seq = line number in train ++ valid ++ test: ties in ts keep RecBole's fold order
        batch.interactions = batch.interactions.with_columns(pl.col("seq") + offset)
        parts[split] = batch
        offset += int(routed["line_no"].max() or 1) if routed.height else 1  # the header is line 1
    item_file, user_file = directory / f"{name}.item", directory / f"{name}.user"
    return BenchmarkSplit(
        directory,
        name,
        paths,
        parts,
        item_file if item_file.is_file() else None,
        user_file if user_file.is_file() else None,
    )


def read_benchmark_split(directory: Path, name: str | None = None) -> dict[str, ParsedBatch]:
    """Parsed train/valid/test interactions of a RecBole benchmark split (``files`` protocol)."""
    return open_benchmark_split(directory, name).parts
