"""The MLflow UI as the results page, in a real headless Chromium, over a small sweep's store.

A real ``mlflow server`` on 127.0.0.1 (one worker, no job runner) serves the store of a 3-trial
sweep (one trial diverges) whose report is attached to its parent run; Playwright drives Debian's
``chromium`` (``NNLAB_CHROMIUM`` to use another binary). Checked: the link the summary prints
opens the runs table; the sweep's saved view shows its trials best first with their metrics and
outcome, the diverged one recognisable; what opening a run does to the UI's GenAI / Model
training mode, and the one click that keeps it; the parent run's metrics and its report in the
artifact viewer; the parent expands to its trials with their datasets and models; a trial's
"Model metrics" page draws ``loss`` and ``val_loss``; the registered model is listed. Screenshots
are kept in ``.nnlab/test-artifacts/mlflow-ui/`` (``NNLAB_UI_SCREENSHOTS`` to put them
elsewhere).

Needs ``pip install -e ".[ui-test]"`` and ``apt-get install chromium`` (``.ci/run`` does both).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import QUIET, ROOT, TINY, cli, mlflow_server, runs

from nnlab.tracking.runs_view import view_key
from nnlab.tracking.schema import run_display_name
from nnlab.tracking.store import runs_url

pytestmark = pytest.mark.slow

EXPERIMENT = "ui"
SHOTS = Path(
    os.environ.get("NNLAB_UI_SCREENSHOTS", ROOT / ".nnlab" / "test-artifacts" / "mlflow-ui")
)


@pytest.fixture(scope="module")
def sweep(make_launch_dir) -> tuple[Path, str]:
    """(launch dir, the sweep's stdout): three trials of experiment ``ui``, lr=1e30 diverging;
    the sweep's end builds the report and attaches it to the parent run."""
    cwd = make_launch_dir("mlflow_ui")
    proc = cli(
        cwd, "-m", "lr=0.01,0.1,1e30", "epochs=5", *TINY, QUIET, f"experiment_name={EXPERIMENT}",
        "report.enabled=true",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return cwd, proc.stdout


@pytest.fixture(scope="module")
def server(sweep) -> Iterator[str]:
    """The UI's base URL: ``mlflow server`` on the sweep's store, stopped with its workers."""
    with mlflow_server(sweep[0], log=sweep[0] / "server.log", timeout=300) as base:
        yield base


def shot(page, name: str) -> None:
    """Keep a screenshot (a promotion dialog and the assistant panel closed, so the page shows
    what it is about)."""
    if page.get_by_role("dialog").count():
        page.keyboard.press("Escape")
    close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count():
        close.first.click(timeout=10_000)
    page.wait_for_timeout(300)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def printed_runs_url(stdout: str, base: str) -> str:
    """The "runs table:" link of the sweep summary, on this test's server."""
    match = re.search(r"runs table: (http://127\.0\.0\.1:5000)(/\S+)", stdout)
    assert match, stdout
    return base + match.group(2)


def row(page, run_id: str, column: str):
    """The cell of run ``run_id`` in the runs table column ``column`` (AG Grid's col-id)."""
    return page.locator(f'[role="row"][row-id="{run_id}"] [col-id="{column}"]').first


def open_runs_table(page, sweep, server: str) -> tuple:
    """The experiment's whole runs table (the link a single run prints: no saved view)."""
    (parent,) = runs(sweep[0], EXPERIMENT, "sweep")
    page.goto(runs_url(server, parent.info.experiment_id))
    row(page, parent.info.run_id, "attributes.`Run Name`").wait_for()
    return parent, runs(sweep[0], EXPERIMENT, "trial")


def test_plain_runs_link_opens_the_table_with_the_parent(page, sweep, server) -> None:
    parent, _ = open_runs_table(page, sweep, server)
    assert "/runs" in page.url and "workflowType=machine_learning" in page.url
    name = row(page, parent.info.run_id, "attributes.`Run Name`").get_by_role("link")
    assert name.inner_text().strip().startswith("sweep lr=0.01,0.1")
    assert page.get_by_role("columnheader", name="Dataset").count()
    shot(page, "runs_table")
    # for the record: the bare experiment URL, the page a newcomer lands on without the link
    exp_id = re.search(r"/experiments/(\d+)/", page.url).group(1)
    page.goto(f"{server}/#/experiments/{exp_id}")
    page.wait_for_timeout(5000)
    shot(page, "experiment_without_link")


def view_url(sweep, server: str) -> str:
    """The link the summary prints, on this test's server: the sweep's saved view of the runs
    table (``runs_url(uri, experiment_id, view=view_key(<parent run id>))``)."""
    (parent,) = runs(sweep[0], EXPERIMENT, "sweep")
    url = printed_runs_url(sweep[1], server)
    assert url == runs_url(server, parent.info.experiment_id, view=view_key(parent.info.run_id))
    return url


# the runs table's column ids, left to right on the screen
SHOWN_COLUMNS = (
    "[...document.querySelectorAll('[role=columnheader][col-id]')]"
    ".sort((a, b) => a.getBoundingClientRect().x - b.getBoundingClientRect().x)"
    ".map(h => h.getAttribute('col-id'))"
)


def best_first(trials: list) -> list:
    """The trials by final val_loss, lowest first, the diverged (NaN) last."""
    loss = [t.data.metrics["val_loss"] for t in trials]
    order = sorted(range(len(trials)), key=lambda i: (math.isnan(loss[i]), loss[i]))
    return [trials[i] for i in order]


def displayed_rows(page) -> list[str]:
    """The run ids of the table's rows, top to bottom."""
    rows = page.locator('.ag-center-cols-container [role="row"][row-id]')
    found = [(int(r.get_attribute("row-index")), r.get_attribute("row-id")) for r in rows.all()]
    return [run_id for _, run_id in sorted(found)]


def test_sweep_view_lists_the_trials_best_first_with_metrics_and_outcome(
    page, sweep, server
) -> None:
    trials = best_first(runs(sweep[0], EXPERIMENT, "trial"))
    assert [t.data.tags["nnlab.outcome"] for t in trials] == ["completed", "completed", "diverged"]
    page.goto(view_url(sweep, server))
    row(page, trials[-1].info.run_id, "attributes.`Run Name`").wait_for()
    assert displayed_rows(page) == [t.info.run_id for t in trials]  # no parent row to expand
    metrics = ["metrics.`val_loss`", "metrics.`loss`", "metrics.`val_accuracy`"]
    page.wait_for_function(  # the view's column order is applied once the rows are in
        f"{SHOWN_COLUMNS}.filter(c => c.startsWith('metrics.')).join() === {json.dumps(metrics)}"
        ".join()"
    )
    shown = page.evaluate(SHOWN_COLUMNS)
    assert "tags.`nnlab.outcome`" in shown and "attributes.`Models`" in shown, shown
    assert page.get_by_text("Sort: val_loss").count() == 1
    for trial in trials:
        run_id = trial.info.run_id
        name = row(page, run_id, "attributes.`Run Name`").get_by_role("link").inner_text()
        assert name.strip() == trial.info.run_name
        outcome = row(page, run_id, "tags.`nnlab.outcome`").inner_text().strip()
        assert outcome == trial.data.tags["nnlab.outcome"]
        assert name.strip().endswith(" [diverged]") == (outcome == "diverged"), name
        value = row(page, run_id, "metrics.`val_loss`").inner_text().strip()
        loss = trial.data.metrics["val_loss"]
        assert value == "NaN" if math.isnan(loss) else value[:5] == f"{loss:.6f}"[:5], value
    shot(page, "sweep_view")


def test_a_diverged_trial_is_named_by_its_outcome(sweep) -> None:
    """The name the runs table shows (the writer names each run when it ends)."""
    trials = runs(sweep[0], EXPERIMENT, "trial")
    (diverged,) = [t for t in trials if t.data.tags["nnlab.outcome"] == "diverged"]
    assert diverged.info.run_name == run_display_name("lr=1e+30", "diverged")
    assert {t.info.run_name for t in trials} >= {"lr=0.01", "lr=0.1"}


def workflow_type(page) -> str | None:
    """The UI mode the browser remembers (localStorage, written only by the sidebar switch)."""
    value = page.evaluate("window.localStorage.getItem('mlflow.workflowType_v1')")
    return None if value is None else json.loads(value)


def test_opening_a_run_shows_genai_until_model_training_is_clicked_once(
    page, sweep, server
) -> None:
    best = best_first(runs(sweep[0], EXPERIMENT, "trial"))[0]
    page.goto(view_url(sweep, server))
    link = row(page, best.info.run_id, "attributes.`Run Name`").get_by_role("link")
    link.click()
    page.wait_for_url(re.compile(f"/runs/{best.info.run_id}"))
    # MLflow 3.18: the table's run links drop ?workflowType, the experiment tag
    # mlflow.experimentKind is not read, so a fresh browser shows the run in GenAI mode
    page.get_by_role("link", name="Evaluations", exact=True).wait_for()
    assert "workflowType" not in page.url and workflow_type(page) is None
    shot(page, "run_page_fresh_browser")

    page.get_by_text("Model training", exact=True).first.click()  # the sidebar switch, once
    page.wait_for_function("localStorage.getItem('mlflow.workflowType_v1') !== null")
    assert workflow_type(page) == "machine_learning"
    page.goto(view_url(sweep, server))
    row(page, best.info.run_id, "attributes.`Run Name`").get_by_role("link").click()
    page.wait_for_url(re.compile(f"/runs/{best.info.run_id}"))
    page.get_by_role("link", name="Runs", exact=True).first.wait_for()  # breadcrumb ui > Runs
    assert page.get_by_role("link", name="Evaluations", exact=True).count() == 0
    shot(page, "run_page_after_one_click")


def test_parent_run_shows_the_sweeps_numbers_and_its_report(page, sweep, server) -> None:
    (parent,) = runs(sweep[0], EXPERIMENT, "sweep")
    base = f"{server}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
    page.goto(f"{base}?workflowType=machine_learning")
    counts = {"n_completed": "2", "n_diverged": "1", "n_failed": "0", "n_skipped": "0"}
    best = min(t.data.metrics["val_loss"] for t in runs(sweep[0], EXPERIMENT, "trial")
               if not math.isnan(t.data.metrics["val_loss"]))  # fmt: skip
    expected = {"best_val_loss": f"{best}"[:6], **counts}
    for metric, value in expected.items():
        cell = page.get_by_role("row").filter(has=page.get_by_role("link", name=metric, exact=True))
        cell.first.wait_for()
        assert cell.first.inner_text().split()[-1].startswith(value), (metric, value)
    shot(page, "parent_run_metrics")

    page.goto(f"{base}/artifacts/report/index.html?workflowType=machine_learning")
    frame = page.locator("iframe[src^='blob:']").element_handle().content_frame()
    frame.wait_for_selector("h1")
    assert EXPERIMENT in frame.inner_text("h1")
    sizes = frame.evaluate("[...document.images].map(i => i.complete ? i.naturalWidth : -1)")
    assert len(sizes) >= 3 and all(w > 0 for w in sizes), sizes  # every figure drawn
    frame.evaluate("document.images[1].scrollIntoView()")
    shot(page, "parent_report_artifact")


def test_parent_expands_to_its_trials_with_datasets_and_models(page, sweep, server) -> None:
    parent, trials = open_runs_table(page, sweep, server)
    assert len(trials) == 3
    best = parent.data.tags["nnlab.best_run_id"]
    for trial in trials:  # collapsed: the trials are not rows yet
        assert page.locator(f'[role="row"][row-id="{trial.info.run_id}"]').count() == 0
    row(page, parent.info.run_id, "attributes.`Run Name`").locator("button").first.click()
    for trial in trials:
        name = row(page, trial.info.run_id, "attributes.`Run Name`").get_by_role("link")
        name.wait_for()
        assert name.inner_text().strip() == trial.info.run_name
        dataset = row(page, trial.info.run_id, "attributes.`Dataset`").inner_text()
        assert "moons (" in dataset and "Training" in dataset, dataset
        # the logged model, shown as its registered version for the best trial
        models = row(page, trial.info.run_id, "attributes.`Models`").inner_text().split()
        assert models == ([EXPERIMENT, "v1"] if trial.info.run_id == best else ["pyfunc"]), models
    assert row(page, parent.info.run_id, "attributes.`Dataset`").inner_text().strip() == "-"
    shot(page, "runs_table_expanded")


def test_trial_model_metrics_page_draws_loss_and_val_loss(page, sweep, server) -> None:
    parent, trials = open_runs_table(page, sweep, server)
    trial = best_first(trials)[0]  # a diverged one has no line to draw
    row(page, parent.info.run_id, "attributes.`Run Name`").locator("button").first.click()
    row(page, trial.info.run_id, "attributes.`Run Name`").get_by_role("link").click()
    page.get_by_text("Model metrics", exact=True).first.click()
    assert page.url.endswith(f"/runs/{trial.info.run_id}/model-metrics")
    cards = page.locator('[data-testid="experiment-view-compare-runs-card"]')
    for metric in ("loss", "val_loss"):
        card = cards.filter(has=page.get_by_text(metric, exact=True))
        line = card.locator("path.js-line").first
        line.wait_for()
        # one point per epoch: the line is drawn through 5 points (M x,y then 4 L segments)
        assert line.get_attribute("d").count("L") >= 4, metric
    shot(page, "trial_model_metrics")


def test_registered_model_lists_its_version_with_both_aliases(page, sweep, server) -> None:
    page.goto(f"{server}/#/models")
    model = page.get_by_role("link", name=EXPERIMENT, exact=True)
    model.wait_for()
    listing = page.locator("tr, [role='row']").filter(has=model).first.inner_text()
    assert "Version 1" in listing, listing
    shot(page, "registered_models")
    model.click()  # the model's page: each version with all its aliases
    version = page.locator("tr, [role='row']").filter(has_text="Version 1").first
    version.wait_for()
    text = version.inner_text()
    assert "@\xa0best" in text and "@\xa0latest_sweep" in text and "val_loss" in text, text
    shot(page, "registered_model_versions")
