"""The MLflow UI, in a real headless Chromium, over a small sweep's store.

A real ``mlflow server`` on 127.0.0.1 (one worker, no job runner) serves the sweep's sqlite store;
Playwright drives Debian's ``chromium`` (``NNLAB_CHROMIUM`` to use another binary). Checked: the
link the sweep summary prints opens the runs table, the parent run expands to its trials with
their datasets and models, a trial's "Model metrics" page draws ``loss`` and ``val_loss``, and
the registered model is listed. Screenshots are kept in ``.nnlab/test-artifacts/mlflow-ui/``
(``NNLAB_UI_SCREENSHOTS`` to put them elsewhere).

Needs ``pip install -e ".[ui-test]"`` and ``apt-get install chromium`` (``.ci/run`` does both).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import QUIET, ROOT, TINY, cli, mlflow_server, runs

pytestmark = pytest.mark.slow

EXPERIMENT = "ui"
CHROMIUM = os.environ.get("NNLAB_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(
    os.environ.get("NNLAB_UI_SCREENSHOTS", ROOT / ".nnlab" / "test-artifacts" / "mlflow-ui")
)
WAIT_MS = 120_000  # a page of the UI on a busy 2-core machine


@pytest.fixture(scope="module")
def sweep(make_launch_dir) -> tuple[Path, str]:
    """(launch dir, the sweep's stdout): two trials of experiment ``ui``."""
    cwd = make_launch_dir("mlflow_ui")
    proc = cli(cwd, "-m", "lr=0.01,0.1", "epochs=5", *TINY, QUIET, f"experiment_name={EXPERIMENT}")
    assert proc.returncode == 0, proc.stderr
    return cwd, proc.stdout


@pytest.fixture(scope="module")
def server(sweep) -> Iterator[str]:
    """The UI's base URL: ``mlflow server`` on the sweep's store, stopped with its workers."""
    with mlflow_server(sweep[0], log=sweep[0] / "server.log", timeout=300) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason='needs pip install -e ".[ui-test]" (Playwright)'
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set NNLAB_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser) -> Iterator:
    """A fresh browser profile (no remembered UI preferences), 1400x860."""
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    yield page
    context.close()


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
    page.goto(printed_runs_url(sweep[1], server))
    (parent,) = runs(sweep[0], EXPERIMENT, "sweep")
    row(page, parent.info.run_id, "attributes.`Run Name`").wait_for()
    return parent, runs(sweep[0], EXPERIMENT, "trial")


def test_printed_link_opens_the_runs_table(page, sweep, server) -> None:
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


def test_parent_expands_to_its_trials_with_datasets_and_models(page, sweep, server) -> None:
    parent, trials = open_runs_table(page, sweep, server)
    assert len(trials) == 2
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
    trial = trials[0]
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


def test_registered_model_is_listed_with_its_best_alias(page, sweep, server) -> None:
    page.goto(f"{server}/#/models")
    model = page.get_by_role("link", name=EXPERIMENT, exact=True)
    model.wait_for()
    listing = page.locator("tr, [role='row']").filter(has=model).first.inner_text()
    assert "Version 1" in listing and "best" in listing, listing
    shot(page, "registered_models")
