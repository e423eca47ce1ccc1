"""Fault tolerance of `rltf train` on a real local Ray instance: a sampler killed mid-run is
replaced and training goes on; a learner rank killed mid-run makes the job restart from its
last checkpoint and still finish every step."""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(_node_ip_address="127.0.0.1", num_cpus=4, include_dashboard=False,
             log_to_driver=False, namespace="rltf")
    yield ray
    ray.shutdown()


def _trained_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r["step"] for r in rows if "loss/total" in r]


def test_sampler_and_learner_deaths_do_not_stop_the_run(ray_local, tmp_path, capsys):
    from cluster import train_cmd

    ray = ray_local
    run = tmp_path / "run"
    args = argparse.Namespace(
        config=None, run_dir=str(run), max_steps=8, max_minutes=None, resume=None,
        overrides=["model.warm_start_steps=20", "data.synth_n=120", "data.max_heldout=8",
                   f"model.cache_dir={tmp_path / 'cache'}", "learner.checkpoint_every=3",
                   "train.eval_every=100", "train.restarts=1"])
    events: list[str] = []

    def chaos():
        deadline = time.time() + 500
        killed_sampler = killed_learner = False
        while time.time() < deadline and not killed_learner:
            steps = _trained_steps(run)
            if not killed_sampler and steps and steps[-1] >= 2:
                ray.kill(ray.get_actor("rltf-sampler-0"), no_restart=True)
                killed_sampler = True
                events.append(f"sampler killed after step {steps[-1]}")
            if killed_sampler and steps and steps[-1] >= 4:  # after the step-3 checkpoint
                ray.kill(ray.get_actor("rltf-learner-rank0"), no_restart=True)
                killed_learner = True
                events.append(f"learner killed after step {steps[-1]}")
            time.sleep(0.2)

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    try:
        assert train_cmd.run(args) == 0
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    thread.join(timeout=5)
    err = capsys.readouterr().err
    assert len(events) == 2, (events, err[-3000:])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["stopped_by"] == "max_steps"
    assert summary["sampler_restarts"] >= 1 and "sampler 0 died" in err
    assert summary["restarts"] == 1 and "restart 1/1 from" in err
    # the restart went back to the step-3 (or later) checkpoint: steps after it were redone,
    # at most checkpoint_every of them
    steps = _trained_steps(run)
    assert steps[-1] == 8
    assert len(steps) - len(set(steps)) <= 3  # steps redone after the restart
    assert set(steps) == set(range(1, 9))
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-000008"
