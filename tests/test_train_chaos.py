"""Faults as they really happen, on a real local Ray instance: each kind of actor's process
killed with SIGKILL (as the kernel's OOM killer or a lost node does, not through Ray) during a
short `rltf train`, at the step thresholds below, and the run still finishes every step:

* a sampler while it generates, and another while the held-out evaluation runs: replaced,
  under its own name once Ray has let it go (never ActorAlreadyExistsError);
* an executor: replaced, its programs judged again;
* the replay buffer and the weight store: restarted by Ray, empty; the driver logs the loss,
  sets the buffer's policy version and publishes the weights again;
* the controller (rltf-driver): restarted by Ray, its status reported again;
* a learner rank: the run rebuilds its actors and continues from the last checkpoint, and
  the counters carry on (the buffer_dropped counter no longer goes negative).

Every training program gets exactly one result: submitted = judged + abandoned by the
restart + in flight at the end, and no result arrives for a program twice."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from ray_head import own_temp_dir, own_token, pids_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# (name of the actor, kill once this many learner steps are logged)
KILLS = [("rltf-sampler-0", 2), ("rltf-executor-0", 3), ("rltf-sampler-0", 4),
         ("rltf-buffer", 5), ("rltf-weights", 5), ("rltf-driver", 6),
         ("rltf-learner-rank0", 7)]


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    ray = pytest.importorskip("ray")
    temp_dir = own_temp_dir()
    with own_token(tmp_path_factory.mktemp("token")):
        ray.init(_node_ip_address="127.0.0.1", num_cpus=4, include_dashboard=False,
                 log_to_driver=False, namespace="rltf", _temp_dir=temp_dir)
        try:
            yield ray
        finally:
            ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)


def _trained_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r["step"] for r in rows if "loss/total" in r]


def test_sigkill_of_every_kind_of_actor_mid_run(ray_local, tmp_path, tiny_cache, capsys):
    from cluster import train_cmd

    ray = ray_local
    run = tmp_path / "run"
    args = argparse.Namespace(
        config=None, run_dir=str(run), max_steps=10, max_minutes=None, resume=None,
        overrides=["model.warm_start_steps=20", "data.synth_n=120", "data.max_heldout=8",
                   f"model.cache_dir={tiny_cache}", "learner.checkpoint_every=3",
                   "train.eval_every=4", "train.restarts=1"])
    events: list[str] = []
    controller_after: list[dict] = []

    def chaos():
        deadline = time.time() + 600
        todo = list(KILLS)
        while time.time() < deadline and todo:
            steps = _trained_steps(run)
            name, after = todo[0]
            pids = pids_of(name)
            if steps and steps[-1] >= after and pids:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                events.append(f"{name} pid {pids} killed after step {steps[-1]}")
                todo.pop(0)
                if name == "rltf-driver":  # Ray restarts it and the driver reports again
                    ctl = ray.get_actor("rltf-driver")
                    t0 = time.time()
                    while time.time() - t0 < 60 and not controller_after:
                        st = ray.get(ctl.status.remote())
                        if st.get("step") is not None and pids_of(name) != pids:
                            controller_after.append(st)
                        time.sleep(0.5)
            time.sleep(0.1)

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
    assert len(events) == len(KILLS), (events, err[-3000:])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 10 and summary["stopped_by"] == "max_steps"
    assert summary["sampler_restarts"] >= 2 and "sampler 0 died" in err
    assert "ActorAlreadyExistsError" not in err
    assert summary["buffer_restarts"] == 1 and "replay buffer's process died" in err
    assert summary["store_restarts"] == 1 and "weight store's process died" in err
    assert controller_after, "the controller was not restarted with the driver's status"
    assert summary["restarts"] == 1 and "restart 1/1 from" in err
    # no program lost or judged twice
    assert summary["results_unexpected"] == 0
    assert summary["programs_submitted"] == (
        summary["programs_judged"] + summary["programs_abandoned_by_restarts"]
        + summary["programs_in_flight_at_end"])
    # the restart went back to the step-6 checkpoint: steps after it were redone
    steps = _trained_steps(run)
    assert set(steps) == set(range(1, 11)) and steps[-1] == 10
    assert len(steps) - len(set(steps)) <= 3
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-000010"
    # the held-out evaluations all finished, the one a sampler died in included
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {4, 8, 10} <= {r["step"] for r in rows if "eval/pass@1" in r}
