"""Checkpoint folders written so that a crash at any moment (the driver or a learner rank
killed mid-write, a lost node) never leaves one that a restart or `--resume` would load
half-written.

The checkpoint of step N is written into `checkpoints/step-N.partial/` (the learner ranks'
DeepSpeed state and `hf/`, the driver's `buffer.pt` and `driver_state.json`, and between two
publishes `published.pt`: the weights the samplers hold, an earlier step's). Then
`manifest.json` lists every file with its size, the folder is renamed to `step-N` (atomic
on one filesystem, a shared one included) and the pointer `latest` names it. A reader takes
the newest `step-N` whose files match its manifest; a `.partial` folder is never read, and
the next write of that step replaces it.

`save` writes a run's checkpoint and `restore` loads one back (learner, buffer, driver state)
and gives the samplers the restored policy version's weights."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from cluster.faults import pause_point

PARTIAL = ".partial"
MANIFEST = "manifest.json"
PUBLISHED = "published.pt"  # the samplers' weights, in a checkpoint between publishes
_NAME = re.compile(r"step-(\d{6,})")


def folder_of(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:06d}"


def begin(run_dir: str | os.PathLike, step: int) -> Path:
    """An empty folder to write step `step`'s checkpoint into (a leftover of a write that
    was killed is removed first)."""
    tmp = folder_of(run_dir, step).with_name(f"step-{step:06d}{PARTIAL}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def commit(partial: Path) -> Path:
    """Seal a folder from `begin` once every part is written: the manifest, the rename to
    `step-N` (replacing an older write of the same step) and the `latest` pointer."""
    pause_point("checkpoint-commit")
    _write_atomic(partial / MANIFEST, json.dumps({"files": _files(partial)}, indent=1))
    final = partial.with_name(partial.name[: -len(PARTIAL)])
    if final.exists():  # the step was redone after a restart from an older checkpoint
        old = final.with_name(final.name + ".replaced")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        partial.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(final)
    _write_atomic(final.parent / "latest", final.name)
    return final


def is_complete(folder: Path) -> bool:
    """Whether `folder` was committed and its files are still the ones the manifest lists."""
    try:
        listed = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all((folder / name).is_file() and (folder / name).stat().st_size == size
               for name, size in listed.items())


def latest_complete(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of the run, or None."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    steps = sorted(((int(m.group(1)), p) for p in root.iterdir()
                    if p.is_dir() and (m := _NAME.fullmatch(p.name))), reverse=True)
    return next((p for _, p in steps if is_complete(p)), None)


def save(trainer, topo) -> Path:
    """Step N's checkpoint of the run: every learner rank's state and `hf/`, the buffer
    (`buffer.pt`) and the driver's state (`driver_state.json`), sealed once all are written."""
    import ray

    with trainer.timer("checkpoint"):
        # written aside and sealed at the end: a crash never leaves a loadable half
        folder = begin(trainer.run_dir, trainer.step)
        topo.learner.save_checkpoint(str(folder))
        buf = ray.get(topo.buffer.state_dict.remote())
        import torch

        torch.save(buf, folder / "buffer.pt")
        (folder / "driver_state.json").write_text(json.dumps(trainer.state()))
        if trainer.versions.saved_with_checkpoint(trainer.step) and trainer.versions.held:
            # the samplers' weights (an earlier step's), for a restore to send them again
            torch.save(dict(ray.get(trainer.versions.held[0])), folder / PUBLISHED)
        folder = commit(folder)
    trainer.last_checkpoint_step = trainer.step
    trainer.log.print(f"checkpoint saved: {folder}")
    return folder


def restore(trainer, topo, folder: Path, keep_totals: bool = False) -> None:
    """Learner (weights, optimizer, scheduler, RNG), buffer and driver state from `folder`;
    then the restored weights go to the samplers as the current version. `keep_totals` (a
    restart within the run): the counts of work done (samples, programs, outcomes, learner
    time) keep what this run did since that checkpoint, as the exported metrics do."""
    import ray
    import torch

    topo.learner.load_checkpoint(str(folder))
    ray.get(topo.buffer.load_state_dict.remote(
        torch.load(folder / "buffer.pt", weights_only=False)))
    state = json.loads((folder / "driver_state.json").read_text())
    if keep_totals:
        state.update(outcomes=dict(trainer.outcomes), samples_generated=trainer.samples_generated,
                     programs_judged=trainer.programs_judged,
                     learner_busy_s=trainer.learner_busy_s,
                     programs_submitted=trainer.programs_submitted)
    trainer.load_state(state)
    trainer.last_checkpoint_step = trainer.step
    send_restored_weights(trainer, topo, folder)


def send_restored_weights(trainer, topo, folder: Path) -> None:
    """The fresh samplers get the restored policy version's own weights, so that the run
    publishes on the same steps and with the same numbers as one never interrupted
    (`PolicyVersions.after_restore`)."""
    import ray
    import torch

    from cluster.weights import put_state

    versions, saved = trainer.versions, None
    if versions.saved_with_checkpoint(trainer.step) and (folder / PUBLISHED).exists():
        saved = put_state(torch.load(folder / PUBLISHED, weights_only=True))
    plan = versions.after_restore(trainer.step, saved)
    if plan == "saved":
        ray.get(topo.store.publish.remote(versions.version, saved))
        ray.get([s.fetch_weights.remote() for s in topo.samplers])
    elif plan != "none":
        if plan == "next":
            trainer.log.print(f"{folder} holds no weights of version {versions.version} "
                              f"(published at step {versions.published_step}): step "
                              f"{trainer.step}'s go out as the next version")
        trainer.publish(topo)
        return
    ray.get(topo.buffer.set_policy_version.remote(versions.version))
