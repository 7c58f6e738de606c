"""nnlab.tracking.schema: flattening a config, the config hash that identifies a trial."""

from __future__ import annotations

from nnlab.tracking import schema


def test_flatten_and_hash_ignore_tracking_keys() -> None:
    cfg = {"lr": 0.1, "model": {"hidden": [4, 4], "seed": 0}, "tracking": {"rerun": False}}
    assert schema.flatten(cfg) == {
        "lr": 0.1,
        "model.hidden": [4, 4],
        "model.seed": 0,
        "tracking.rerun": False,
    }
    same = {**cfg, "tracking": {"rerun": True}, "report": {"enabled": True}}
    assert schema.config_hash(cfg) == schema.config_hash(same)
    assert schema.config_hash(cfg) != schema.config_hash({**cfg, "lr": 0.01})


def test_run_display_name_marks_runs_without_a_usable_result() -> None:
    name = schema.run_display_name
    assert name("lr=0.1", "completed") == "lr=0.1"
    assert name("lr=0.1", "early_stopped") == "lr=0.1"
    assert name("lr=0.1", None) == "lr=0.1"
    for outcome in ("diverged", "pruned", "failed", "killed"):
        assert name("lr=1 batch_size=16", outcome) == f"lr=1 batch_size=16 [{outcome}]"
    # a name that already carries a mark gets the new outcome's (a killed run completed later)
    assert name("lr=1 [killed]", "completed") == "lr=1"
    assert name("lr=1 [killed]", "diverged") == "lr=1 [diverged]"
    assert name(name("lr=1", "failed"), "failed") == "lr=1 [failed]"
    assert name("tag=[x]", "completed") == "tag=[x]"  # brackets of the overrides stay
