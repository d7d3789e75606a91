"""Test-wide environment: a throwaway data dir and a small synthetic dataset for Dagster tests.

The partition set is computed when the assets are imported, so these variables are set before any
test module imports `orchestration` or `assets`. The data dir and Dagster home are always fresh
temporary folders (`make` exports the user's own ones, which tests must never write into).
"""

import os
import tempfile

import pytest

_DATA = tempfile.mkdtemp(prefix="recdag-test-")
os.environ["RECDAG_DATA_DIR"] = _DATA
os.environ["RECDAG_DATASET"] = "synthetic:30000"
os.environ.pop("RECDAG_SPLIT", None)  # protocol tests set it per test
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="recdag-dagster-home-")


def _heavy_seconds(item) -> float:
    mark = item.get_closest_marker("heavy")
    return float(mark.args[0]) if mark is not None and mark.args else 0.0


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The modules marked ``heavy(seconds)`` first, longest first; the rest in their usual order. ``make test``
    hands whole modules to its 2 workers in this order (pytest-xdist ``--dist loadfile --no-loadscope-reorder``;
    without the last flag xdist reorders modules by their number of tests): started last, a 5-minute module
    would run alone at the end while the other worker idles."""
    items.sort(key=lambda item: -_heavy_seconds(item))  # stable: file and test order kept within a weight


_TIMELINE = os.environ.get("RECDAG_TEST_TIMELINE")  # a file: one line per test (worker, start, end, seconds, id)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With RECDAG_TEST_TIMELINE=<file>, each test (setup, call and teardown) appends when and on which
    xdist worker it ran: the data for the ``heavy`` weights above and for finding the suite's idle tail."""
    if not _TIMELINE:
        yield
        return
    import time

    start = time.time()
    yield
    end = time.time()
    with open(_TIMELINE, "a") as out:
        out.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}\t{start:.1f}\t{end:.1f}\t{end - start:.1f}\t{item.nodeid}\n")
