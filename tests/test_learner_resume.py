"""Resume exactness: 4 learner steps in one go == 2 steps, checkpoint, fresh process, restore,
2 more steps. Bitwise: the weights, AdamW's exp_avg / exp_avg_sq, the LR schedule, the
replay buffer (contents, counters, its own RNG) and the process's Python / torch / numpy RNG
state, at ZeRO 0 and ZeRO 2.

Batches come from a seeded `uniform` replay buffer that receives new experiences and a new
policy version after every step (so staleness eviction and the buffer's RNG both matter); the
tiny GPT-2 keeps its dropout, so the torch RNG must be restored too. Each phase is a fresh
Python process (as a resumed job is) with a single-rank PolicyEngine on gloo: DeepSpeed's
`init_distributed` stays out of the pytest process.

Both variants use torch's AdamW: the engine's default config asks for it on CPU
(`torch_adam: true`), because DeepSpeed's CPU Adam op keeps beta^t as a running product inside
the process and so is not bitwise exact across a resume; on GPU the CUDA FusedAdam kernel
recomputes the bias correction from the step and is exact.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEPS, SPLIT = 4, 2
BATCH = 8  # experiences per step: grad_accum 2 x micro-batch 4


# -- what each process runs ------------------------------------------------------------------

def _experiences(step: int, vocab: int):
    """New experiences after `step` steps; a function of `step` only (no global RNG)."""
    from actors.replay_buffer import Experience

    rng = random.Random(1000 + step)
    out = []
    for i in range(10):
        n = rng.randint(3, 9)
        out.append(Experience(
            task_id=f"t{i % 4}", sample_id=f"s{step}-{i}",
            prompt_ids=[rng.randrange(2, vocab) for _ in range(rng.randint(2, 7))],
            completion_ids=[rng.randrange(2, vocab) for _ in range(n)],
            token_rewards=[rng.uniform(-1, 1) for _ in range(n)],
            behaviour_logprobs=[-rng.uniform(4.0, 7.0) for _ in range(n)],
            outcome=rng.choice(["pass", "fail", "runtime_error"]), reward=rng.uniform(-1, 1),
            policy_version=step))
    return out


def _micro_batches(exps, grad_accum: int, pad_id: int):
    from learner.batch import TrainBatch, collate

    size = len(exps) // grad_accum
    return [TrainBatch(rl=collate([e.prompt_ids for e in part], [e.completion_ids for e in part],
                                  [e.token_rewards for e in part],
                                  [e.behaviour_logprobs for e in part], pad_id=pad_id))
            for part in (exps[i * size:(i + 1) * size] for i in range(grad_accum))]


def _optimizer_state(engine) -> dict:
    """The AdamW moments per parameter (the flat fp32 partitions under ZeRO 1/2)."""
    opt = engine.optimizer
    base = getattr(opt, "optimizer", opt)
    out = {}
    for gi, group in enumerate(base.param_groups):
        for pi, p in enumerate(group["params"]):
            for k, v in base.state.get(p, {}).items():
                out[f"{gi}.{pi}.{k}"] = v.detach().clone() if torch.is_tensor(v) else v
            out[f"{gi}.{pi}.param"] = p.detach().clone()
        out[f"{gi}.lr"] = group["lr"]
    return out


VARIANTS = ("z2-torch", "z0-default")


def _settings(variant: str, model_path: str, workdir: Path):
    """`z<stage>-torch`: the engine's DeepSpeed config with `torch_adam: true` (torch.optim.AdamW);
    `z<stage>-default`: the engine's own config (DeepSpeed's FusedAdam, its CPU op on CPU)."""
    import json

    from core.config import LearnerConfig

    from learner.engine import EngineSettings, build_ds_config

    stage, optim = variant.split("-")
    learner = LearnerConfig(lr=5e-3, warmup_steps=2, schedule="linear",
                            micro_batch_size=BATCH // 2, zero_stage=int(stage[1:]))
    settings = EngineSettings(model_path=model_path, learner=learner, total_steps=8,
                              grad_accum=2, seed=3)
    if optim == "torch":
        cfg = build_ds_config(settings, 1, on_gpu=False)
        cfg["optimizer"]["params"]["torch_adam"] = True
        path = workdir / f"ds-{variant}.json"
        path.write_text(json.dumps(cfg))
        settings.learner.deepspeed_config = str(path)
    return settings


def _run(phase: str, variant: str, model_path: str, workdir: Path) -> None:
    import numpy as np

    from actors.replay_buffer import ReplayBuffer
    from core.config import BufferConfig
    from learner.engine import PolicyEngine
    from core.config import LearnerConfig
    from learner.objectives import RLTFObjective

    settings = _settings(variant, model_path, workdir)
    folder = workdir / f"{variant}-ckpt"
    eng = PolicyEngine(settings)  # seeds Python, torch and numpy from settings.seed
    vocab = eng.model.config.vocab_size
    pad = eng.model.config.pad_token_id
    buf = ReplayBuffer(BufferConfig(capacity=24, max_staleness=2, mode="uniform"), seed=7)
    objective = RLTFObjective(LearnerConfig(sl_weight=0.0, importance_ratio_max=2.0,
                                            clip_eps=None))
    first = 0
    if phase == "resume":
        eng.load_checkpoint(folder)
        buf.load_state_dict(torch.load(folder / "buffer.pt", weights_only=False))
        first = eng.step
        assert first == SPLIT, first
    else:
        buf.add(_experiences(0, vocab))
    last = SPLIT if phase == "first" else STEPS
    metrics = []
    for step in range(first, last):
        batch = buf.sample(BATCH)
        assert len(batch) == BATCH
        m = eng.train_step(_micro_batches(batch, settings.grad_accum, pad), objective)
        metrics.append((m.step, m.loss, repr(m.grad_norm), m.lr))  # repr: nan == nan
        buf.set_policy_version(step + 1)
        buf.add(_experiences(step + 1, vocab))
    if phase == "first":
        eng.save_checkpoint(folder)
        torch.save(buf.state_dict(), folder / "buffer.pt")
    torch.save({
        "metrics": metrics, "step": eng.step, "global_steps": eng.engine.global_steps,
        "optimizer_class": type(getattr(eng.optimizer, "optimizer", eng.optimizer)).__name__,
        "weights": eng.full_state_dict(), "optimizer": _optimizer_state(eng),
        "scheduler": eng.scheduler.state_dict(), "buffer": buf.state_dict(),
        "stats": buf.stats(), "python_rng": random.getstate(),
        "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
    }, workdir / f"{variant}-{phase}.pt")


def _worker(phase: str, model_path: str, workdir: str, *variants: str) -> None:
    """One process per phase; the variants run one after the other (each engine re-seeds).
    The `default` variant runs first, so DeepSpeed's CPU Adam op starts fresh in each."""
    torch.set_num_threads(1)
    for variant in variants:
        _run(phase, variant, model_path, Path(workdir))


# -- the test --------------------------------------------------------------------------------

def _spawn(phase: str, model_path: str, workdir: Path, variants):
    from cluster.weights import free_port

    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0",
               WORLD_SIZE="1", LOCAL_RANK="0", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    return subprocess.Popen([sys.executable, __file__, phase, model_path, str(workdir),
                             *variants], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(proc, timeout: float = 400) -> None:
    text, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, text[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """For each variant: (uninterrupted 4 steps, first 2 steps, resumed last 2 steps)."""
    from tiny_models import make_gpt2

    workdir = tmp_path_factory.mktemp("resume")
    model_path = make_gpt2(workdir / "gpt2")
    order = sorted(VARIANTS, key=lambda v: not v.endswith("default"))
    procs = [_spawn("full", model_path, workdir, order),
             _spawn("first", model_path, workdir, order)]
    for p in procs:
        _wait(p)
    _wait(_spawn("resume", model_path, workdir, order))
    return {v: tuple(torch.load(workdir / f"{v}-{phase}.pt", weights_only=False)
                     for phase in ("full", "first", "resume")) for v in VARIANTS}


def _equal(a, b, where: str = "") -> None:
    """Bitwise equality through dicts, lists, tuples, tensors and dataclasses."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs (max |diff| " \
            f"{(a.double() - b.double()).abs().max().item():.3g})"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f"{where}[{i}]")
    elif hasattr(a, "shape") and hasattr(a, "dtype"):  # numpy arrays
        assert (a == b).all(), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _check(full: dict, head: dict, resumed: dict) -> None:
    # the same program twice gives the same first steps (no run-to-run noise)
    assert head["metrics"] == full["metrics"][:SPLIT]
    assert any(not torch.equal(full["weights"][k], head["weights"][k]) for k in full["weights"])
    assert resumed["step"] == full["step"] == STEPS
    assert resumed["global_steps"] == full["global_steps"]
    # the buffer and the RNGs are restored exactly (checked first: they explain the rest)
    _equal(resumed["buffer"], full["buffer"], "buffer")
    assert resumed["stats"] == full["stats"]
    assert full["stats"].dropped_stale > 0 and full["stats"].dropped_full > 0
    _equal(resumed["python_rng"], full["python_rng"], "python_rng")
    _equal(resumed["torch_rng"], full["torch_rng"], "torch_rng")
    _equal(resumed["numpy_rng"], full["numpy_rng"], "numpy_rng")
    _equal(resumed["scheduler"], full["scheduler"], "scheduler")
    assert resumed["metrics"] == full["metrics"][SPLIT:], (resumed["metrics"], full["metrics"])
    _equal(resumed["weights"], full["weights"], "weights")
    moments = [k for k in full["optimizer"] if k.endswith(("exp_avg", "exp_avg_sq"))]
    assert moments, sorted(full["optimizer"])
    _equal(resumed["optimizer"], full["optimizer"], "optimizer")


@pytest.mark.parametrize("variant", ["z2-torch", "z0-default"])
def test_resume_is_bitwise_exact(runs, variant):
    # z0-default: the engine's own DeepSpeed config, which uses torch's AdamW on CPU
    full, head, resumed = runs[variant]
    assert full["optimizer_class"] == "AdamW"
    _check(full, head, resumed)


if __name__ == "__main__":
    _worker(*sys.argv[1:])
