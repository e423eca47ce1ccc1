"""`rltf train` end to end on a real local Ray instance, as a user runs it: a short tiny run
writes its whole run folder; --resume continues that folder from its last checkpoint; SIGTERM
saves a checkpoint and exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.records import OUTCOMES
from tiny_models import SMALL_RUN

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def _small(cache: Path) -> list[str]:
    # A short run (tiny_models.SMALL_RUN) keeps the test quick; everything else is the
    # embedded default (configs/tiny.yaml).
    return [*SMALL_RUN, f"model.cache_dir={cache}", "learner.checkpoint_every=2"]


def _rltf(*args: str) -> list[str]:
    return [sys.executable, "-m", "cluster.cli", *args]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _rows(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_short_run_writes_the_whole_run_folder_then_resume_runs_until_sigterm(
        tmp_path, cache):
    run = tmp_path / "run"
    proc = subprocess.run(_rltf("train", "--run-dir", str(run), "--max-steps", "3",
                                "train.eval_every=2", "train.eval_val=true", "weights.sync_every=2",
                                *_small(cache)),
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "held-out pass@1" in proc.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["stopped_by"] == "max_steps"
    for key in ("pass_at_1_before", "pass_at_1_after"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["wall_s"] > 0 and 0 < summary["learner_busy_fraction"] <= 1
    assert summary["samples_generated"] >= summary["programs_judged"] > 0
    rows = _rows(run)
    steps = [r["step"] for r in rows if "loss/total" in r]
    assert steps == [1, 2, 3]
    evals = [r["step"] for r in rows if "eval/pass@1" in r]
    assert evals == [0, 2, 3]
    trained = [r for r in rows if "loss/total" in r]
    # a policy version counts publishes: sync_every=2 publishes after step 2 (version 1),
    # and the end of the run publishes step 3's weights for the last evaluation (version 2)
    assert [r["policy/version"] for r in trained] == [0, 1, 1]
    assert summary["policy_version"] == 2
    for r in trained:  # outcome shares of the programs judged since the last step
        shares = [r[f"outcome/{o}"] for o in OUTCOMES]  # every outcome: they sum to 1
        assert all(0.0 <= x <= 1.0 for x in shares)
        assert abs(sum(shares) - 1.0) < 1e-6 or sum(shares) == 0.0  # 0: none judged that step
    assert (run / "config.yaml").exists() and (run / "report.md").exists()
    assert len(list((run / "plots").glob("*.png"))) >= 5
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    latest = (run / "checkpoints" / "latest").read_text().strip()
    assert latest == "step-000003"
    ck = run / "checkpoints" / latest
    assert (ck / "hf" / "config.json").exists() and (ck / "buffer.pt").exists()
    assert (ck / "sl_rng_rank0.json").exists()  # the rank's own draws of supervised rows
    state = json.loads((ck / "driver_state.json").read_text())
    assert (state["step"], state["version"], state["published_step"]) == (3, 2, 3)
    # flat phases: each second counts in one phase at most, so they add up to no more than
    # the run's time
    phases = summary["phase_seconds"]
    assert {"generate", "judge", "learn", "sync", "evaluate", "checkpoint"} <= set(phases)
    assert sum(phases.values()) <= summary["wall_s"]

    # --resume continues the same folder from that checkpoint (step 3, version 2) until a
    # SIGTERM, which saves a checkpoint and exits cleanly (one run, not a separate run and a
    # resume of its own: one Ray start less in the suite)
    proc = subprocess.Popen(_rltf("train", "--resume", str(run), "--max-steps", "1000",
                                  "train.eval_every=1000"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None:
            if any(r.get("step", 0) >= 5 and "loss/total" in r for r in _rows(run)):
                break
            time.sleep(1)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "resumed from" in err
    summary2 = json.loads((run / "summary.json").read_text())
    assert summary2["stopped_by"] == "signal SIGTERM"
    stopped = summary2["steps"]
    assert 5 <= stopped < 1000
    assert summary2["pass_at_1_before"] == summary["pass_at_1_before"]
    trained = [r for r in _rows(run) if "loss/total" in r]
    assert [r["step"] for r in trained] == list(range(1, stopped + 1))
    # policy versions go on from the checkpoint's (2): never back, never restarted from 0
    versions = [r["policy/version"] for r in trained]
    assert versions == sorted(versions) and versions[3] >= 2
    latest = (run / "checkpoints" / "latest").read_text().strip()
    assert latest == f"step-{stopped:06d}"
    ck = run / "checkpoints" / latest
    assert (ck / "hf" / "config.json").exists() and (ck / "buffer.pt").exists()
    assert json.loads((ck / "driver_state.json").read_text())["step"] == stopped
