"""The files in deploy/ as Ray reads them (pure: no cluster, no cloud account):

* `ray_cluster_aws.yaml` goes through what `ray up` does before it calls AWS
  (`prepare_config`: the provider's defaults filled in, then Ray's schema validation);
* `kuberay_rayjob.yaml`'s cluster spec goes through what the KubeRay autoscaler does with a
  RayCluster (node types derived from the worker groups' pods and rayStartParams, then the
  same validation).

Then the job each file documents (`rltf train --config ... executor.resources=...`, parsed
from the file) is checked against the node types Ray derived: every sampler, learner rank and
executor has a place (`cluster/resources.py`, what `rltf train` checks at start-up), and
executors (executor_node) and the GPU pools (samplers, learner ranks) can only land on their
own node types."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from core.config_reading import load_config
from cluster.resources import demands, node_types_from_config, shortfalls

ROOT = Path(__file__).resolve().parents[1]


def _train_args(command: str) -> tuple[str, list[str]]:
    """(--config, overrides) of an `rltf train ...` command line."""
    words = shlex.split(command)
    words = words[words.index("train") + 1:]
    config, overrides = None, []
    while words:
        w = words.pop(0)
        if w == "--config":
            config = words.pop(0)
        elif w.startswith("--"):
            words.pop(0)  # --run-dir and the like take a value
        else:
            overrides.append(w)
    return config, overrides


def _aws() -> tuple[dict, str]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    text = (ROOT / "deploy/ray_cluster_aws.yaml").read_text()
    config = prepare_config(copy.deepcopy(yaml.safe_load(text)))
    validate_config(config)
    # the documented job: the comment's `ray job submit ... -- rltf train ...` lines
    comment = " ".join(line.lstrip("# ").rstrip("\\ ") for line in text.splitlines()
                       if line.startswith("#"))
    return config, re.search(r"-- (rltf train .*?/shared/rltf-cache)", comment).group(1)


def _kuberay() -> tuple[dict, str]:
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr)

    job = yaml.safe_load((ROOT / "deploy/kuberay_rayjob.yaml").read_text())
    cluster = {"metadata": {"name": job["metadata"]["name"], "namespace": "default"},
               "spec": job["spec"]["rayClusterSpec"]}
    # validates the derived config with Ray's schema, as the KubeRay autoscaler does
    return _derive_autoscaling_config_from_ray_cr(cluster), job["spec"]["entrypoint"]


@pytest.mark.parametrize("load", [_aws, _kuberay], ids=["aws", "kuberay"])
def test_deploy_file_is_a_valid_ray_cluster_whose_node_types_hold_its_job(load, tmp_path):
    config, command = load()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]["resources"]
    workers = [(name, t["resources"], t["max_workers"]) for name, t in types.items()
               if name != config["head_node_type"]]
    preset, overrides = _train_args(command)
    assert preset and "executor.resources={executor_node: 1}" in overrides, command
    # (the problems and model the job reads are on the cluster's storage, not here)
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"task_id": "t", "prompt": "p", "format": "assert",
                                    "entry_point": "f", "tests": ["assert f()"]}) + "\n")
    cfg = load_config(ROOT / preset, [*overrides, f"data.train_file={problems}",
                                      f"data.heldout_file={problems}", "model.path=tiny"])
    dem = demands(cfg)
    assert {d.what for d in dem} == {"sampler", "executor", "learner rank"}
    # every actor has a place on the head and the node types the autoscaler may add
    assert shortfalls(dem, [head], node_types_from_config(workers)) == []
    # ... and would not without them (the check is not empty)
    assert shortfalls(dem, [head]) != []
    # executors only on executor nodes, samplers and learner ranks only on GPU nodes
    assert head.get("CPU", 0) == 0
    for name, res, _ in workers:
        assert bool(res.get("executor_node")) != bool(res.get("GPU")), (name, res)
    gpu_pools = [d for d in dem if d.what != "executor"]
    assert all(d.bundle.get("GPU") for d in gpu_pools)
    assert [d.bundle.get("executor_node") for d in dem if d.what == "executor"] == [1]
