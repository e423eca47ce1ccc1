"""Faults as they really happen, on a real local Ray instance: each kind of actor's process
killed with SIGKILL (as the kernel's OOM killer or a lost node does, not through Ray) during a
short `rltf train` with sync_every=3 (publishes after steps 3, 6, 9) and a checkpoint every 4
steps, and the run still finishes every step:

* a sampler while it generates, and another while the held-out evaluation runs: replaced,
  under its own name once Ray has let it go (never ActorAlreadyExistsError);
* an executor: replaced, its programs judged again;
* the replay buffer: restarted by Ray, empty; the driver logs the loss and sets its version;
* the weight store between two publishes: restarted by Ray, empty; the driver gives it the
  same version's weights again, so the publish schedule does not move (every step's policy
  version is step // 3, as without the kill);
* the controller (rltf-driver): restarted by Ray, its status reported again;
* learner rank 0 while it writes the step-8 checkpoint (held there by `cluster/faults.py`):
  the checkpoint is never sealed, the run rebuilds its actors from the last complete one
  (step 4, between publishes: the samplers get step 3's weights, saved with it, as version 1
  again, so the publish schedule does not move) and the counters carry on (the
  buffer_dropped counter no longer goes negative);
* the new learner rank 0 while that restart restores the checkpoint: the next restart runs;
* the weight store while it takes that restart's publish of version 1: Ray restarts it and
  runs the publish again.
(A rank killed while it gathers a publish: tests/test_weight_sync.py.)

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
from tiny_models import SMALL_RUN

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# (once this many learner steps are logged: the actor whose processes are killed at once, or
# "pause:<phase>" to arm that phase and kill the process that reaches it, there)
KILLS = [(2, "rltf-sampler-0"), (3, "rltf-executor-0"), (4, "rltf-sampler-0"),
         (4, "rltf-weights"), (5, "rltf-buffer"), (5, "rltf-driver"),
         (7, "pause:learner-checkpoint"), (7, "pause:learner-restore"),
         (7, "pause:store-publish")]


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    from cluster.faults import PAUSE_ENV

    ray = pytest.importorskip("ray")
    temp_dir = own_temp_dir()
    pauses = tmp_path_factory.mktemp("pauses")
    os.environ[PAUSE_ENV] = str(pauses)  # every actor's process inherits it
    with own_token(tmp_path_factory.mktemp("token")):
        ray.init(_node_ip_address="127.0.0.1", num_cpus=4, include_dashboard=False,
                 log_to_driver=False, namespace="rltf", _temp_dir=temp_dir)
        try:
            yield ray, pauses
        finally:
            ray.shutdown()
            os.environ.pop(PAUSE_ENV, None)
            shutil.rmtree(temp_dir, ignore_errors=True)


def _trained_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r["step"] for r in rows if "loss/total" in r]


@pytest.mark.timeout(1200)  # one run, two restarts; a shared machine under load needs more
def test_sigkill_of_every_kind_of_actor_mid_run(ray_local, tmp_path, tiny_cache, capsys):
    from cluster import checkpoints, train_cmd
    from cluster.faults import wait_paused

    ray, pauses = ray_local
    run = tmp_path / "run"
    args = argparse.Namespace(
        config=None, run_dir=str(run), max_steps=10, max_minutes=None, resume=None,
        overrides=[*SMALL_RUN,
                   f"model.cache_dir={tiny_cache}", "learner.checkpoint_every=4",
                   "weights.sync_every=3", "train.eval_every=4", "train.eval_val=true",
                   "train.restarts=2"])
    events: list[str] = []
    controller_after: list[dict] = []

    def chaos():
        deadline = time.time() + 1140  # within the test's timeout
        todo, armed, controller_pids = list(KILLS), [], None
        while time.time() < deadline and (todo or armed or controller_pids):
            for phase in list(armed):  # a process waits at an armed phase: kill it there
                pid = wait_paused(pauses, phase, 0)
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    events.append(f"{phase}: pid {pid} killed there")
                    armed.remove(phase)
            if controller_pids:  # Ray restarts it and the driver reports to it again
                st = ray.get(ray.get_actor("rltf-driver").status.remote(), timeout=30)
                if st.get("step") is not None and pids_of("rltf-driver") != controller_pids:
                    controller_after.append(st)
                    controller_pids = None
            steps = _trained_steps(run)
            if todo and steps and steps[-1] >= todo[0][0]:
                what = todo[0][1]
                if what.startswith("pause:"):
                    (pauses / what[6:]).touch()
                    armed.append(what[6:])
                    todo.pop(0)
                elif pids := pids_of(what):
                    for pid in pids:
                        os.kill(pid, signal.SIGKILL)
                    events.append(f"{what} pid {pids} killed after step {steps[-1]}")
                    todo.pop(0)
                    if what == "rltf-driver":
                        controller_pids = pids
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
    # the store killed between publishes got version 1 (step 3's weights) again; the one
    # killed while the restart gave it version 1 took it again when Ray ran it again
    assert summary["store_restarts"] == 2 and "giving it version 1 again" in err
    assert "it holds version 1 already" in err
    assert controller_after, "the controller was not restarted with the driver's status"
    # rank 0 killed while writing the step-8 checkpoint: the run went back to step 4; the
    # restart was killed while restoring, and the next one finished it
    assert summary["restarts"] == 2
    step4 = run / "checkpoints" / "step-000004"
    assert f"restart 1/2 from {step4}" in err and f"restart 2/2 from {step4}" in err
    assert "during restart 1" in err
    # no program lost or judged twice
    assert summary["results_unexpected"] == 0
    assert summary["programs_submitted"] == (
        summary["programs_judged"] + summary["programs_abandoned_by_restarts"]
        + summary["programs_in_flight_at_end"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "loss/total" in r]
    steps = [r["step"] for r in trained]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8, 5, 6, 7, 8, 9, 10]
    # the publish schedule as without any fault: versions 1, 2, 3 after steps 3, 6, 9, and
    # the end of the run publishes step 10's weights as version 4 for the last evaluation
    assert [r["policy/version"] for r in trained] == [s // 3 for s in steps]
    assert summary["policy_version"] == 4
    # the torn step-8 write was replaced by the redone step's; every folder is sealed, and
    # those between publishes hold the samplers' weights
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["latest", "step-000004", "step-000008", "step-000010"]
    assert [(run / "checkpoints" / n / checkpoints.PUBLISHED).exists() for n in names[1:]] \
        == [True, True, False]
    assert all(checkpoints.is_complete(run / "checkpoints" / n) for n in names[1:])
    assert checkpoints.latest_complete(run).name == "step-000010"
    # the held-out evaluations all finished, the one a sampler died in included
    assert {4, 8, 10} <= {r["step"] for r in rows if "eval/pass@1" in r}
