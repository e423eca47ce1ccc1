"""The checkpoint writer (cluster/checkpoints.py), without Ray: a checkpoint is loadable only
once every part is written and sealed by its manifest, and a process killed with SIGKILL
while writing one leaves the previous checkpoint as the one a restart or --resume loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from cluster import checkpoints
from cluster.faults import PAUSE_ENV, wait_paused

ROOT = Path(__file__).resolve().parent.parent


def _write(run: Path, step: int, payload: str = "x" * 100) -> Path:
    """A checkpoint as the driver writes one: parts from the ranks and the driver, sealed."""
    folder = checkpoints.begin(run, step)
    (folder / "deepspeed").mkdir()
    (folder / "deepspeed" / "model_states.pt").write_text(payload)
    (folder / "driver_state.json").write_text(json.dumps({"step": step}))
    return checkpoints.commit(folder)


def test_only_sealed_checkpoints_are_loaded(tmp_path):
    assert checkpoints.latest_complete(tmp_path) is None
    _write(tmp_path, 2)
    four = _write(tmp_path, 4)
    assert checkpoints.latest_complete(tmp_path) == four
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-000004"
    # a write cut short leaves step-6.partial: never loaded
    part = checkpoints.begin(tmp_path, 6)
    (part / "driver_state.json").write_text("{}")
    assert checkpoints.latest_complete(tmp_path) == four
    # a sealed folder whose file was cut afterwards (a node lost before the data reached
    # the disk) no longer matches its manifest: the one before it is loaded
    (four / "deepspeed" / "model_states.pt").write_text("x" * 10)
    assert checkpoints.latest_complete(tmp_path).name == "step-000002"
    # the step redone after a restart: the new write replaces the old folder and the leftover
    six = _write(tmp_path, 6, payload="y" * 7)
    _write(tmp_path, 4)
    assert checkpoints.latest_complete(tmp_path) == six
    assert (six / "deepspeed" / "model_states.pt").read_text() == "y" * 7
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest", "step-000002", "step-000004", "step-000006"]


WRITER = """
import sys
from pathlib import Path
from tests.test_checkpoints import _write
run = Path(sys.argv[1])
_write(run, 2)
_write(run, 4, payload="z" * 100000)  # waits, armed, before sealing: killed there
"""


def test_a_writer_killed_mid_checkpoint_leaves_the_previous_one(tmp_path):
    run, pauses = tmp_path / "run", tmp_path / "pauses"
    pauses.mkdir()
    (pauses / "checkpoint-commit").touch()  # armed: the first commit (step 2's) waits
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run)], cwd=ROOT,
                            env={**os.environ, PAUSE_ENV: str(pauses)})
    try:
        pid = wait_paused(pauses, "checkpoint-commit", 60)
        assert pid == proc.pid
        # step 2 waits before its manifest: nothing is loadable yet
        assert checkpoints.latest_complete(run) is None
        (pauses / "checkpoint-commit").touch()  # armed again: step 4's commit waits
        os.remove(pauses / f"checkpoint-commit.{pid}")  # step 2 goes on and is sealed
        assert wait_paused(pauses, "checkpoint-commit", 60) == proc.pid
        assert checkpoints.latest_complete(run).name == "step-000002"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    # every part of step 4 is on disk, but it was never sealed: step 2 is what loads
    assert (run / "checkpoints" / "step-000004.partial" / "driver_state.json").exists()
    assert checkpoints.latest_complete(run) == run / "checkpoints" / "step-000002"
    assert (run / "checkpoints" / "latest").read_text() == "step-000002"
