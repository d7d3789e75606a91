"""End to end, as deployed: `dagster dev` (webserver, daemon, code server) on a small Taobao-format
CSV with one corrupted day, driven through GraphQL, alerts through the daemon-run sensors into a
local webhook, and the UI checked in headless Chromium.

Asserts: the good day range ingests as one run; the corrupted day fails its blocking
``quarantine_share`` check, its bad lines are in ``quality.quarantine`` and downstream of it nothing
runs; the alert sensors post that check failure and the run failure to the webhook once each; the
downstream job materializes up to ``FINAL_ASSET`` and writes ``eval.metrics``; every asset of the
definitions has a latest materialization; the UI shows the asset graph (groups collapsed, then all
expanded with every asset node materialized), the catalog listing every asset as materialized, the
final asset's page with the headline and the Holm-corrected paired tests as tables rendered inline
(no click), its ndcg-vs-K plot opened in its markdown dialog, and the self-contained HTML report
(``exports/report.html``) opened from disk. Screenshots go to ``test-artifacts/e2e/``.
"""

import json
import re
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from e2e_support import (
    DagsterDev,
    GraphQL,
    WebhookReceiver,
    deployment_env,
    deployment_home,
    free_port,
    read_warehouse,
    repository_selector,
    write_taobao_csv,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = pytest.mark.heavy(170)  # rough serial seconds of this module: scheduled first (tests/conftest.py)

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"

# The asset keys the test checks; extend as the pipeline grows.
FINAL_ASSET = "evaluation"  # furthest downstream: its page is opened in the UI
DOWNSTREAM_ASSETS = ["split", "candidates_pop", "candidates_itemcf", "lgbm_ranker", "evaluation"]
INGESTION_ASSETS = ["raw_interactions", "ingestion_log", "items", "users", "interactions"]
# Tables several steps or sensors write: external assets, observed but never materialized (assets/catalog.py)
SHARED_ASSETS = {"quality_quarantine", "quality_check_results", "quality_alerts", "eval_metrics", "models_registry"}
ASSET_GROUPS = ["ingestion", "split", "features", "candidates", "rankers", "evaluation"]  # boxes of the global lineage
FINAL_UPSTREAM = ["lgbm_ranker", "sequence_ranker", "final_stage"]  # shown on the final asset's upstream lineage
FAILED_PARTITION_ASSET = "interactions"  # its corrupted-day partition failed: red on the graph, the rest green
# table metadata entries of FINAL_ASSET, rendered inline on its page: the entry and some of its column headers
HEADLINE_TABLE = ("headline", ("stage", "ndcg@10", "ndcg 95% low", "ndcg 95% high", "recall@10", "hit_rate@10", "users"))
PAIRED_TABLE = ("paired_tests_holm", ("versus", "mean_diff", "p_value", "p_holm", "decided_95"))
REFERENCE_STAGE = "lgbm_ranker"  # a stage in every row of the headline table's first column
MARKDOWN_PLOT = "ndcg_vs_k"  # a markdown metadata entry of FINAL_ASSET holding an embedded image

START = date(2017, 11, 25)
N_DAYS = 6
CORRUPT_DAY = START + timedelta(days=N_DAYS - 2)  # the 5th day: days 1-4 are one good range, day 6 a late good day
GOOD_RANGE = (START.isoformat(), (CORRUPT_DAY - timedelta(days=1)).isoformat())
LAST_DAY = (START + timedelta(days=N_DAYS - 1)).isoformat()
# Windows of two days (RECDAG_CUTOFF_DAYS=2) leave exactly one rolling-origin cut-off: train days 1-2, valid
# days 3-4, test days 5-6 (the corrupted day 5 never reaches the clean interactions, so day 6 is the test).
CUTOFF_DAYS = 2
CUTOFF = CORRUPT_DAY.isoformat()

# One process per run: the multiprocess executor spends ~20 s per step importing the code location on
# 2 cores, and the duckdb_writer pool serializes the steps anyway.
# The code location's default executor is in-process (orchestration/definitions.py): no execution config.
RUN_CONFIG: dict = {}
STARTUP_DEADLINE_S = 150
INGESTION_DEADLINE_S = 150
TRAIN_DEADLINE_S = 300
ALERT_DEADLINE_S = 90
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN = """
query Run($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run { status assetMaterializations { assetKey { path } partition } }
  }
}"""
CHECK_EXECUTIONS = """
query Checks($asset: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $asset, checkName: $check, limit: 20) {
    runId status partition evaluation { success severity description }
  }
}"""
LATEST_MATERIALIZATION = """
query Latest($asset: AssetKeyInput!) {
  assetOrError(assetKey: $asset) {
    __typename
    ... on Asset { assetMaterializations(limit: 1) { runId metadataEntries { label } } }
  }
}"""
ASSET_NODES = """
{ assetNodes { assetKey { path } isPartitioned assetMaterializations(limit: 1) { runId } } }"""


@pytest.fixture
def deployment(tmp_path):
    """A running `dagster dev` on a temporary DAGSTER_HOME, data dir, dataset and webhook."""
    home, data = deployment_home(tmp_path, REPO_ROOT)
    csv = tmp_path / "taobao.csv"
    dataset = write_taobao_csv(csv, n_days=N_DAYS, start=START, corrupt_day=CORRUPT_DAY)
    receiver = WebhookReceiver()
    env = deployment_env(home, data, f"taobao:{csv}", receiver.url, REPO_ROOT, RECDAG_CUTOFF_DAYS=str(CUTOFF_DAYS))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dev = DagsterDev(REPO_ROOT, free_port(), env, ARTIFACTS / "dagster-dev.log")
    try:
        dev.wait_ready(STARTUP_DEADLINE_S)
        yield {"dev": dev, "receiver": receiver, "data": data, "dataset": dataset}
    finally:
        dev.stop()
        receiver.close()


def _launch(gql: GraphQL, selector: dict, job: str, tags: dict) -> str:
    params = {
        "selector": {**selector, "jobName": job},
        "runConfigData": RUN_CONFIG,
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    result = gql.query(LAUNCH, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", f"launching {job} {tags}: {result}"
    return result["run"]["runId"]


def _wait(gql: GraphQL, run_ids: list[str], deadline_s: float, dev: DagsterDev) -> dict[str, dict]:
    deadline, done = time.monotonic() + deadline_s, {}
    while time.monotonic() < deadline:
        for run_id in run_ids:
            if run_id not in done:
                run = gql.query(RUN, {"id": run_id})["runOrError"]
                if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                    done[run_id] = run
        if len(done) == len(run_ids):
            return done
        time.sleep(2.0)
    raise TimeoutError(f"runs {set(run_ids) - set(done)} not finished after {deadline_s}s:\n{dev.log_tail()}")


def _materialized(run: dict) -> set[tuple[str, str | None]]:
    return {("/".join(m["assetKey"]["path"]), m["partition"]) for m in run["assetMaterializations"]}


def _read_warehouse(path: Path) -> dict:
    return read_warehouse(
        path,
        lambda con: {
            "quarantine": con.execute('SELECT "partition", reason FROM quality.quarantine ORDER BY line_no').pl(),
            "metrics": con.execute("SELECT stage, metric, k, cohort, value, run_id FROM eval.metrics").pl(),
            "alerts": con.execute('SELECT kind, asset, "check", "partition", run_id, severity, delivered_at FROM quality.alerts').pl(),
        },
    )


@pytest.mark.e2e
def test_deployment_end_to_end(deployment):
    dev, receiver = deployment["dev"], deployment["receiver"]
    gql = GraphQL(dev.url + "/graphql")
    selector = repository_selector(gql)

    good = _launch(
        gql,
        selector,
        "daily_ingestion",
        {
            "dagster/asset_partition_range_start": GOOD_RANGE[0],
            "dagster/asset_partition_range_end": GOOD_RANGE[1],
        },
    )
    bad = _launch(gql, selector, "daily_ingestion", {"dagster/partition": CORRUPT_DAY.isoformat()})
    late = _launch(gql, selector, "daily_ingestion", {"dagster/partition": LAST_DAY})
    runs = _wait(gql, [good, bad, late], INGESTION_DEADLINE_S, dev)
    assert runs[late]["status"] == "SUCCESS", dev.log_tail()
    assert runs[good]["status"] == "SUCCESS", dev.log_tail()
    good_days = {(START + timedelta(days=k)).isoformat() for k in range(N_DAYS - 2)}
    assert {p for a, p in _materialized(runs[good]) if a == "raw_interactions"} == good_days  # one run, four partitions
    assert {a for a, _ in _materialized(runs[good])} == set(INGESTION_ASSETS)

    assert runs[bad]["status"] == "FAILURE"
    assert ("raw_interactions", CORRUPT_DAY.isoformat()) in _materialized(runs[bad])
    assert not any(a == "interactions" for a, _ in _materialized(runs[bad]))  # the blocking check stopped it

    checks = gql.query(CHECK_EXECUTIONS, {"asset": {"path": ["raw_interactions"]}, "check": "quarantine_share"})
    (bad_check,) = [e for e in checks["assetCheckExecutions"] if e["runId"] == bad]
    assert bad_check["status"] == "FAILED" and bad_check["partition"] == CORRUPT_DAY.isoformat()
    assert bad_check["evaluation"]["severity"] == "ERROR" and not bad_check["evaluation"]["success"]
    assert CORRUPT_DAY.isoformat() in bad_check["evaluation"]["description"]
    # a range run evaluates the check once for the whole range (its per-day records read SKIPPED)
    good_checks = [e["evaluation"] for e in checks["assetCheckExecutions"] if e["runId"] == good and e["evaluation"]]
    assert good_checks and all(e["success"] for e in good_checks)

    train = _launch(gql, selector, "train_and_evaluate", {"dagster/partition": CUTOFF})
    runs = _wait(gql, [train], TRAIN_DEADLINE_S, dev)
    assert runs[train]["status"] == "SUCCESS", dev.log_tail()
    assert set(DOWNSTREAM_ASSETS) <= {a for a, _ in _materialized(runs[train])}

    # the daemon runs the alert sensors: one check alert and one run-failure alert for the bad day
    deadline = time.monotonic() + ALERT_DEADLINE_S
    while time.monotonic() < deadline:
        texts = receiver.texts()
        check_alert = [t for t in texts if "raw_interactions.quarantine_share" in t and CORRUPT_DAY.isoformat() in t]
        run_alert = [t for t in texts if "run failed" in t and bad in t]
        if check_alert and run_alert:
            break
        time.sleep(2.0)
    (ARTIFACTS / "webhook-bodies.json").write_text(json.dumps(receiver.bodies, indent=1))
    assert len(check_alert) == 1, f"check alert not delivered once: {texts}\n{dev.log_tail()}"
    assert len(run_alert) == 1, f"run-failure alert not delivered once: {texts}"
    assert all("blocks" in body for body in receiver.bodies)

    tables = _read_warehouse(deployment["data"] / "warehouse.duckdb")
    quarantine = tables["quarantine"]
    assert quarantine.height == deployment["dataset"]["n_corrupt"]
    assert set(quarantine["partition"]) == {CORRUPT_DAY.isoformat()}
    metrics = tables["metrics"].filter(tables["metrics"]["run_id"] == train)
    assert metrics.height > 0 and {"ndcg", "recall"} <= set(metrics["metric"])
    ndcg = metrics.filter((metrics["metric"] == "ndcg") & (metrics["k"] == 10) & (metrics["cohort"] == "all"))
    assert ndcg.height > 0 and ndcg["value"].is_between(0.0, 1.0).all() and ndcg["value"].max() > 0.0
    alerts = tables["alerts"]
    bad_alerts = alerts.filter(alerts["run_id"] == bad)
    assert sorted(bad_alerts["kind"]) == ["asset_check", "run_failure"]
    assert bad_alerts["delivered_at"].is_not_null().all()

    latest = gql.query(LATEST_MATERIALIZATION, {"asset": {"path": [FINAL_ASSET]}})["assetOrError"]
    labels = [e["label"] for e in latest["assetMaterializations"][0]["metadataEntries"]]
    assert latest["assetMaterializations"][0]["runId"] == train and labels

    # every asset of the definitions is materialized: ingestion by the ingestion runs, the rest by `train`
    nodes = gql.query(ASSET_NODES)["assetNodes"]
    assert SHARED_ASSETS <= {"/".join(n["assetKey"]["path"]) for n in nodes}  # in the catalog, never materialized
    nodes = [n for n in nodes if "/".join(n["assetKey"]["path"]) not in SHARED_ASSETS]
    latest_run = {"/".join(n["assetKey"]["path"]): [m["runId"] for m in n["assetMaterializations"]] for n in nodes}
    assert set(INGESTION_ASSETS + DOWNSTREAM_ASSETS + [FINAL_ASSET]) <= set(latest_run)
    assert not [a for a, r in latest_run.items() if not r], f"never materialized: {latest_run}"
    assert {a for a, r in latest_run.items() if r[0] in (good, bad, late)} == set(INGESTION_ASSETS)
    assert {a for a, r in latest_run.items() if r[0] == train} == set(latest_run) - set(INGESTION_ASSETS)
    partitioned = {"/".join(n["assetKey"]["path"]): n["isPartitioned"] for n in nodes}

    _check_ui(dev.url, selector["repositoryLocationName"], labels, partitioned, deployment["data"] / "exports" / "report.html")


def _check_ui(url: str, location: str, labels: list[str], partitioned: dict[str, bool], report: Path) -> None:
    """The asset graph and the final asset's page as a person sees them; screenshots for review.

    ``partitioned``: every asset key of the definitions ("/"-joined) -> whether it is partitioned.
    """
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(45_000)
            page.goto(f"{url}/asset-groups")  # global lineage: one box per asset group
            skip = page.get_by_role("button", name="Skip")  # the first-visit "join the community" dialog
            try:
                skip.click(timeout=15_000)
            except PlaywrightTimeout:
                pass
            for group in ASSET_GROUPS:
                expect(page.get_by_text(group, exact=True).first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "global-lineage.png"))

            page.goto(f"{url}/locations/{location}/asset-groups/ingestion")
            for name in INGESTION_ASSETS:
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            expect(page.get_by_text("Materialized").first).to_be_visible()
            expect(page.get_by_text("(1 failed)").first).to_be_visible()  # interactions: the corrupted day
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / "ingestion-graph.png"))

            # wide enough that the graph is drawn at a zoom that shows each node's partition status
            page.set_viewport_size({"width": 2400, "height": 1400})
            page.goto(f"{url}/assets/{FINAL_ASSET}?view=lineage&lineageScope=upstream&lineageDepth=1")
            for name in FINAL_UPSTREAM:
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            # the chain is partitioned by cut-off: every partition (the one cut-off) is materialized
            expect(page.get_by_text("100% filled").first).to_be_visible()
            try:  # node status badges load after the layout; the screenshot is taken either way
                expect(page.get_by_text("Loading...")).to_have_count(0, timeout=10_000)
            except AssertionError:
                pass
            page.screenshot(path=str(ARTIFACTS / "final-asset-lineage.png"))

            page.set_viewport_size({"width": 1600, "height": 2200})  # the page scrolls inside a pane: show more of it
            page.goto(f"{url}/assets/{FINAL_ASSET}")
            expect(page.get_by_text("Latest materialization").first).to_be_visible()
            header = page.locator("tr", has=page.get_by_text("Timestamp", exact=True)).first  # the metadata table
            expect(header).to_have_text("KeyTimestampValue")
            # Dagster shows its own dagster/* entries (table name, schema, row counts) elsewhere on the page
            for label in [x for x in labels if not x.startswith("dagster/")][:3]:
                expect(page.get_by_text(label, exact=True).first).to_be_visible()
            # the headline and the paired tests are table entries: rendered on the page without opening anything
            headline = _inline_table(page, *HEADLINE_TABLE)
            expect(headline.get_by_text(REFERENCE_STAGE, exact=True).first).to_be_visible()
            expect(headline.get_by_text("[Show Markdown]")).to_have_count(0)
            paired = _inline_table(page, *PAIRED_TABLE)
            expect(paired.get_by_text("pop", exact=True).first).to_be_visible()  # one comparison per other stage
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / "final-asset-page.png"))
            headline.screenshot(path=str(ARTIFACTS / "evaluation-headline.png"))

            _check_report(browser, report)
            _check_plot_dialog(page, url)
            _check_expanded_graph(page, url, partitioned)
            _check_catalog(page, url, partitioned)
        finally:
            browser.close()


def _inline_table(page, entry: str, columns: tuple[str, ...]):
    """The row of the asset page's metadata table for table entry ``entry``, once its table is rendered
    inline with every header in ``columns`` and at least one body row."""
    from playwright.sync_api import expect

    key = page.get_by_text(entry, exact=True).first
    expect(key).to_be_visible()
    row = page.locator("tr", has=key).first
    for column in columns:
        expect(row.get_by_text(column, exact=True).first).to_be_visible()
    expect(row.locator("table tbody tr").first).to_be_visible()
    return row


def _check_report(browser, report: Path) -> None:
    """The self-contained HTML report (evaluation wrote it, evaluation_summary rewrote it with the pooled
    cut-offs), opened from disk as a person would, in the same Chromium."""
    from playwright.sync_api import expect

    assert report.exists(), f"no report at {report}"
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(report.as_uri())
    expect(page.get_by_role("heading", name=re.compile("^Headline"))).to_be_visible()
    headline = page.locator("table").first
    for column in ("stage", "ndcg@10 [95% CI]", "recall@10 [95% CI]", "hit_rate@10 [95% CI]", "users"):
        expect(headline.get_by_role("columnheader", name=column, exact=True)).to_be_visible()
    expect(headline.get_by_role("cell", name=REFERENCE_STAGE, exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("^Paired tests"))).to_be_visible()
    expect(page.get_by_text(re.compile("after Holm")).first).to_be_visible()
    images = page.locator("img")
    assert images.count() >= 3
    for i in range(images.count()):  # every plot decoded: inline base64 PNGs, nothing fetched
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 100")
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.close()


def _check_plot_dialog(page, url: str) -> None:
    """The final asset's plot (a markdown metadata entry) opened in its dialog as a person would."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1600, "height": 1100})  # the dialog centred over the asset page
    page.goto(f"{url}/assets/{FINAL_ASSET}")
    dialog = _show_markdown(page, MARKDOWN_PLOT)
    image = dialog.locator("img")
    expect(image).to_have_count(1)
    expect(image).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("img => img.naturalWidth") > 100  # a decoded plot, not a broken-image icon
    page.screenshot(path=str(ARTIFACTS / "evaluation-plot.png"))
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_have_count(0)


# True once a dialog has finished its opening transition (fade and zoom), so the screenshot is not washed out.
_SETTLED_JS = """dialog => document.getAnimations().every(a => {
  const target = a.effect && a.effect.target;
  return a.playState !== 'running' || !target || !(target.contains(dialog) || dialog.contains(target));
}) && (() => { for (let e = dialog; e; e = e.parentElement) if (parseFloat(getComputedStyle(e).opacity) < 1) return false;
  return true; })()"""


def _show_markdown(page, label: str):
    """Opens the markdown metadata entry ``label`` of the asset page and returns its dialog once shown."""
    from playwright.sync_api import expect

    row = page.locator("tr", has=page.get_by_text(label, exact=True)).first  # its row of the metadata table
    row.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_have_count(1)
    expect(dialog.get_by_text(label, exact=True)).to_be_visible()
    page.wait_for_function(_SETTLED_JS, arg=dialog.element_handle())
    return dialog


# Each node of the zoomed-out graph: its (middle-truncated) name and its status colour.
_MINIMAL_NODES_JS = """() => Array.from(document.querySelectorAll('[class*="minimalAssetNodeBox"]')).map(box => ({
  name: (box.querySelector('[class*="minimalName"]') || {}).textContent || '',
  bg: box.style.getPropertyValue('--minimal-bg').trim(),
}))"""


def _shown_as(text: str, name: str) -> bool:
    """Whether a graph node labelled ``text`` is asset ``name`` (long names are middle-truncated with '…')."""
    if "…" not in text:
        return text == name
    head, tail = text.split("…", 1)
    return len(head) + len(tail) < len(name) and name.startswith(head) and name.endswith(tail)


def _check_expanded_graph(page, url: str, partitioned: dict[str, bool]) -> None:
    """The global lineage with every group expanded: one node per asset, all green but the failed-day one."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 2400, "height": 2600})  # big enough for the whole graph at the minimum zoom
    page.goto(f"{url}/asset-groups")
    for group in ASSET_GROUPS:
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    page.keyboard.press("Alt+KeyE")  # the graph settings' "Expand all groups" shortcut
    expect(page).to_have_url(re.compile(r"[?&]expanded="))
    # the graph zooms to fit on load, not on expanding: reload the expanded view so every node is on screen
    # (nodes off screen are not rendered)
    page.reload()
    expected = {key.split("/")[-1] for key in partitioned}  # nodes show the last path component
    deadline = time.monotonic() + 30.0
    while True:  # the layout, then each node's live status (a neutral "loading" colour first) load asynchronously
        nodes = [n for n in page.evaluate(_MINIMAL_NODES_JS) if not any(_shown_as(n["name"], s) for s in SHARED_ASSETS)]
        status = {name: [n["bg"] for n in nodes if _shown_as(n["name"], name)] for name in expected}
        green = {name for name, bg in status.items() if len(bg) == 1 and "green" in bg[0]}
        if len(nodes) == len(expected) and green == expected - {FAILED_PARTITION_ASSET} or time.monotonic() > deadline:
            break
        page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "asset-graph-expanded.png"))
    assert len(nodes) == len(expected), f"graph nodes {sorted(n['name'] for n in nodes)} vs assets {sorted(expected)}"
    assert green == expected - {FAILED_PARTITION_ASSET}, f"not shown as materialized: {status}"
    assert "red" in status[FAILED_PARTITION_ASSET][0], status  # its corrupted day failed
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "asset-graph-expanded.png"))


def _check_catalog(page, url: str, partitioned: dict[str, bool]) -> None:
    """The catalog lists every asset with its latest materialization (partition counts when partitioned)."""
    from playwright.sync_api import expect

    # the table is virtualized: tall enough that every row is rendered and in the screenshot
    page.set_viewport_size({"width": 1600, "height": 240 + 64 * (len(partitioned) + len(SHARED_ASSETS))})
    page.goto(f"{url}/assets")
    for key, is_partitioned in sorted(partitioned.items()):
        row = page.locator('[class*="VirtualizedTable_row"]', has=page.get_by_test_id(f"checkbox-{key}"))
        expect(row).to_have_count(1)
        expect(row.locator(f'a[href="/assets/{key}"]').get_by_title(key, exact=True)).to_be_visible()
        expect(row).to_contain_text("partition" if is_partitioned else "Materialized")  # "1 partition" or "N partitions"
        expect(row).not_to_contain_text("Never materialized")
    # (the shared tables' rows are external assets: observed, never materialized; the rows above are every other asset)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "catalog.png"))
