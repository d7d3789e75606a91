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
- ``read_benchmark_split(dir, name=None) -> dict[str, ParsedBatch]`` for the ``files`` protocol:
  ``<dir>/<name>.train.inter``, ``.valid.inter``, ``.test.inter`` -> {"train", "valid", "test"}.
  There is no declared date range: rows load whatever their day; unparsable timestamps quarantine
  with partition "unroutable". Non-integer tokens (e.g. Amazon ASINs) quarantine: map them first.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys.sources import ParsedBatch, SourceError
from recsys.sources.lines import Field, LineFormat, finalize, route, scan_raw_lines

ATOMIC_TYPES = ("token", "float", "token_seq", "float_seq")
SPLITS = ("train", "valid", "test")


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


def read_benchmark_split(directory: Path, name: str | None = None) -> dict[str, ParsedBatch]:
    """Parsed train/valid/test interactions of a RecBole benchmark split (``files`` protocol)."""
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
    out = {}
    for split, path in paths.items():
        routed = route(parse_inter(path), None).collect()
        out[split] = finalize(routed, source_name=name, source_path=str(path))
    return out
