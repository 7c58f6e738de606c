"""nnlab.tracking.parent and runs_view: what closing a sweep leaves on its parent run (the
numbers as metrics, the runs-table view, the report as artifacts), on a real sqlite store."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

from nnlab.tracking import parent, runs_view
from nnlab.tracking.schema import OUTCOMES
from nnlab.tracking.store import client, runs_url


def _sweep(tracking_store, name: str) -> SimpleNamespace:
    """A parent run in a new experiment ``name``: the sweep context end_parent reads."""
    _, uri, _ = tracking_store
    c = client(uri)
    exp_id = c.create_experiment(name)
    run = c.create_run(exp_id, run_name="sweep lr=0.1,1")
    return SimpleNamespace(
        uri=uri, experiment_id=exp_id, parent_run_id=run.info.run_id, sweep_id="abc123"
    )


def _views(uri: str, exp_id: str) -> dict[str, dict]:
    tags = client(uri).get_experiment(exp_id).tags
    prefix = runs_view.TAG_PREFIX
    return {k[len(prefix) :]: json.loads(v) for k, v in tags.items() if k.startswith(prefix)}


def test_end_parent_logs_the_counts_and_the_best_as_metrics(tracking_store) -> None:
    ctx = _sweep(tracking_store, "parent_metrics")
    counts = {o: 0 for o in OUTCOMES} | {"completed": 3, "diverged": 1, "skipped": 2}
    best = {"run_id": "r1", "val_loss": 0.125, "loss": 0.1}
    parent.end_parent(ctx, counts, best, "the summary", "FINISHED")
    run = client(ctx.uri).get_run(ctx.parent_run_id)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["best_val_loss"] == 0.125 and "best_loss" not in metrics
    assert {k: v for k, v in metrics.items() if k.startswith("n_")} == {
        f"n_{o}": float(counts[o]) for o in OUTCOMES
    }
    assert run.data.tags["nnlab.n_diverged"] == "1" and run.data.tags["nnlab.best_run_id"] == "r1"


def test_end_parent_takes_the_objective_and_skips_a_best_without_a_value(tracking_store) -> None:
    ctx = _sweep(tracking_store, "parent_objective")
    best = {"run_id": "r1", "val_accuracy": 0.9}
    parent.end_parent(ctx, {"completed": 1}, best, "s", "FINISHED", objective="val_accuracy")
    metrics = client(ctx.uri).get_run(ctx.parent_run_id).data.metrics
    assert metrics["best_val_accuracy"] == 0.9 and metrics["n_completed"] == 1.0
    assert metrics["n_failed"] == 0.0  # every outcome has its count
    (view,) = _views(ctx.uri, ctx.experiment_id).values()
    assert json.loads(view["state"])["orderByAsc"] is False  # the highest accuracy first

    ctx = _sweep(tracking_store, "parent_no_best")  # every trial diverged
    parent.end_parent(ctx, {"diverged": 2}, {"run_id": None, "val_loss": math.nan}, "s", "FINISHED")
    metrics = client(ctx.uri).get_run(ctx.parent_run_id).data.metrics
    assert "best_val_loss" not in metrics and metrics["n_diverged"] == 2.0


def test_a_sweep_view_shows_its_trials_best_first_with_their_numbers(tracking_store) -> None:
    ctx = _sweep(tracking_store, "parent_view")
    parent.end_parent(ctx, {"completed": 2}, {"run_id": "r", "val_loss": 0.2}, "s", "FINISHED")
    views = _views(ctx.uri, ctx.experiment_id)
    key = runs_view.view_key(ctx.parent_run_id)
    assert list(views) == [key]
    envelope = views[key]  # what MLflow's "Views" menu reads
    assert isinstance(envelope["createdAt"], int) and "abc123" in envelope["name"]
    state = json.loads(envelope["state"])
    assert state["searchFilter"] == f"tags.`mlflow.parentRunId` = '{ctx.parent_run_id}'"
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`val_loss`", True)
    assert state["selectedColumns"][:4] == [
        "metrics.`val_loss`", "metrics.`loss`", "metrics.`val_accuracy`", "tags.`nnlab.outcome`"
    ]  # fmt: skip
    assert state["columnOrder"][0] == "attributes.`Run Name`"
    url = runs_url("sqlite:///x.db", ctx.experiment_id, view=key)
    assert url == (
        f"http://127.0.0.1:5000/#/experiments/{ctx.experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={key}"
    )


def test_only_the_newest_sweep_views_are_kept(tracking_store, monkeypatch) -> None:
    ctx = _sweep(tracking_store, "parent_prune")
    monkeypatch.setattr(runs_view, "KEEP", 2)
    c = client(ctx.uri)
    c.set_experiment_tag(ctx.experiment_id, runs_view.TAG_PREFIX + "mine", '{"name": "x"}')
    keys = [
        runs_view.save_sweep_view(ctx.uri, ctx.experiment_id, f"p{i}", f"v{i}") for i in range(4)
    ]
    assert set(_views(ctx.uri, ctx.experiment_id)) == {"mine", *keys[2:]}  # the user's stays


def test_log_report_puts_the_report_under_report_with_its_figures_inline(
    tracking_store, tmp_path: Path
) -> None:
    ctx = _sweep(tracking_store, "parent_report")
    report = tmp_path / "report"
    report.mkdir()
    png = b"\x89PNG\r\n\x1a\n"
    (report / "heatmap.png").write_bytes(png)
    (tmp_path / "outside.png").write_bytes(png)
    page = "<p><img src='heatmap.png' alt='h'><img src=\"../outside.png\"><img src='gone.png'></p>"
    (report / "index.html").write_text(page)
    parent.log_report(ctx.uri, ctx.parent_run_id, report)
    c = client(ctx.uri)
    files = {f.path for f in c.list_artifacts(ctx.parent_run_id, "report")}
    assert files == {"report/index.html", "report/heatmap.png"}
    uploaded = Path(c.download_artifacts(ctx.parent_run_id, "report/index.html", str(tmp_path)))
    html = uploaded.read_text()
    # the artifact viewer shows the page from a blob: URL: its own figure inline, nothing else
    assert "<img src='data:image/png;base64,iVBORw0KGgo=' alt='h'>" in html
    assert '<img src="../outside.png">' in html and "<img src='gone.png'>" in html
    assert (report / "index.html").read_text() == page  # the report itself is left as built
