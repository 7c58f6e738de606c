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
