"""A hook for fault tests: a process waits at a named phase so that the test can kill it there
with SIGKILL, instead of hoping that the timing lands there.

With RLTF_PAUSE_DIR=<folder> in the environment (set before Ray starts, so that every actor's
process inherits it), a test arms phase P by creating the file <folder>/P. The first process
to reach `pause_point(P)` takes the file (renames it to P.<pid>: only one process can), then
waits there until that file is removed or `PAUSE_LIMIT_S` pass. Unarmed phases, and every
phase without the variable, cost one environment lookup.

Phases: `learner-publish` (a learner rank about to gather the weights of a publish),
`store-publish` (the weight store taking a published version), `learner-checkpoint` (a
learner rank that has written its part of a checkpoint, before it answers),
`checkpoint-commit` (the driver, every part of a checkpoint written, before the manifest),
`learner-restore` (a learner rank about to load a checkpoint: a restart or `--resume`),
`learner-fetch` (a learner rank about to fetch its share of a batch from the buffer)."""

from __future__ import annotations

import os
import time

PAUSE_ENV = "RLTF_PAUSE_DIR"
PAUSE_LIMIT_S = 300.0


def pause_point(phase: str) -> None:
    folder = os.environ.get(PAUSE_ENV)
    if not folder:
        return
    held = os.path.join(folder, f"{phase}.{os.getpid()}")
    try:
        os.rename(os.path.join(folder, phase), held)
    except OSError:  # not armed, or another process took it
        return
    deadline = time.time() + PAUSE_LIMIT_S
    while os.path.exists(held) and time.time() < deadline:
        time.sleep(0.05)


def wait_paused(folder: str | os.PathLike, phase: str, timeout_s: float) -> int | None:
    """For tests: the pid of the process waiting at `phase` (armed in `folder`), once one
    is; None after `timeout_s`."""
    deadline = time.time() + timeout_s
    prefix = f"{phase}."
    while True:
        for name in os.listdir(folder):
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                return int(name[len(prefix):])
        if time.time() >= deadline:
            return None
        time.sleep(0.05)
