"""The archive of ranker training windows: each cut-off's labelled lists, kept for later cut-offs to stack.

Layout (one Parquet file per cut-off's label window, under the comparison key, so a window is only ever
stacked with runs of the same dataset, protocol and cut-off rule)::

    <data_dir>/training_windows/<sha1 of the key, 16 hex>/<start>__<end>.parquet

(``start``/``end``: the label window, ``YYYYMMDDTHHMMSS``). A rerun of a cut-off replaces its file (written
under a temporary name, then renamed). Each key keeps its newest ``keep`` windows (default ``KEEP`` = 10, by the
end of the label window); older files are removed when a window is saved, so a daily schedule's archive stays
bounded (at 2M events a window's labelled lists are up to ``max_train_rows`` = 1M rows). Reading is lazy (``pl.scan_parquet``): only the windows a fit
stacks are read. recsys.rankers.stacking says which windows may be stacked and how.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import datetime
from pathlib import Path

import polars as pl

from recsys.rankers.stacking import Window

_FMT = "%Y%m%dT%H%M%S"
KEEP = 10  # windows kept per comparison key: several times any useful stack_windows


class TrainingWindows:
    def __init__(self, data_dir: str | os.PathLike):
        self.root = Path(data_dir) / "training_windows"

    def _dir(self, key: tuple[str, ...]) -> Path:
        return self.root / hashlib.sha1("\x1f".join(key).encode("utf-8")).hexdigest()[:16]

    def save(self, key: tuple[str, ...], bounds: tuple[datetime, datetime], rows: pl.DataFrame, keep: int = KEEP) -> Path:
        """Keep ``rows`` (a cut-off's labelled lists) as the window ``bounds`` of ``key``, replacing it; then only the
        newest ``keep`` windows of ``key`` stay."""
        folder = self._dir(key)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "key.txt").write_text("\n".join(key) + "\n")
        path = folder / f"{bounds[0].strftime(_FMT)}__{bounds[1].strftime(_FMT)}.parquet"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
        try:
            rows.write_parquet(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        by_end = sorted(folder.glob("*__*.parquet"), key=lambda p: p.stem.split("__")[1])
        for old in by_end[: max(0, len(by_end) - max(1, keep))]:
            old.unlink()
        return path

    def windows(self, key: tuple[str, ...]) -> list[Window]:
        """Every archived window of ``key`` (rows as lazy scans), oldest first."""
        folder = self._dir(key)
        out = []
        for path in sorted(folder.glob("*__*.parquet")) if folder.exists() else []:
            start, end = path.stem.split("__")
            out.append(Window(datetime.strptime(start, _FMT), datetime.strptime(end, _FMT), pl.scan_parquet(path)))
        return out

    def row_counts(self, windows: list[Window]) -> list[int]:
        """Rows per window, read from the Parquet footers."""
        return [int(w.rows.select(pl.len()).collect().item()) for w in windows]
