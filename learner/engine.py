"""One learner rank: a DeepSpeed engine around any Hugging Face causal LM or encoder–decoder.

    eng = PolicyEngine(settings, rank=0, world_size=1)    # torch.distributed env already set
    metrics = eng.train_step(micro_batches, loss_fn)      # one optimiser step
    state = eng.full_state_dict()                         # ZeRO-3 shards gathered first
    eng.save_checkpoint(dir, step)                        # DeepSpeed state + save_pretrained

With `EngineSettings(critic=True)` each rank also owns a `Critic` of the kind `learner.critic`
names (`learner/critic.py`): a small head on the policy's hidden states with its own AdamW
optimiser, outside DeepSpeed. Objectives reach it as `engine.critic` on the object passed to
`loss_fn` and call `critic.backward(loss)`; `train_step` steps it (gradients averaged over the
ranks) after the policy's step; checkpoints keep its state in `deepspeed/critic_rank<r>.pt`.

The DeepSpeed config is either the user's JSON/YAML file, passed as is (its "auto" values are
filled from the settings), or a default built from the settings: ZeRO stage, optional CPU
offload of the optimiser, fp32 on CPU and bf16 on GPU, gradient clipping and accumulation.
The learning rate warms up linearly and then stays constant or decays (linear or cosine).
This module knows nothing of Ray or executors; `cluster/` places the ranks.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from core.config import LearnerConfig
from learner.models import learner_precision, load_model  # noqa: F401 (load_model: re-export)


@dataclass
class EngineSettings:
    """What one rank's engine needs: the run's `learner` section as is
    (`core.config.LearnerConfig`: optimiser, schedule, ZeRO, precision, the critic head), and
    what the run derives from its other settings."""

    model_path: str  # a save_pretrained folder or a hub id (learner/models.py resolves it)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    total_steps: int = 1000  # the schedule's length (a run: train.max_steps)
    grad_accum: int = 1  # micro-batches per optimiser step (cluster/driver.py works it out)
    seed: int = 0
    critic: bool = False  # own a learner.critic head beside the policy (algo=actor_critic)
    betas: tuple[float, float] = (0.9, 0.999)


def load_ds_file(path: str) -> dict:
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text) or {}
    return json.loads(text)


def _fill_auto(node: Any, values: dict[str, Any], path: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _fill_auto(v, values, f"{path}.{k}" if path else k) for k, v in node.items()}
    if node == "auto":
        key = path.split(".")[-1]
        if key not in values:
            raise ValueError(f"DeepSpeed config: no value for 'auto' at {path}")
        return values[key]
    return node


def build_ds_config(s: EngineSettings, world_size: int, on_gpu: bool) -> dict:
    """The DeepSpeed config: the user's file with "auto" filled in, or a default."""
    lc = s.learner
    precision = learner_precision(lc.precision, on_gpu)
    if not on_gpu and precision != "fp32":
        raise ValueError(f"precision {precision} needs a GPU; use precision=fp32 on CPU")
    auto = {
        "train_micro_batch_size_per_gpu": lc.micro_batch_size,
        "gradient_accumulation_steps": s.grad_accum,
        "train_batch_size": lc.micro_batch_size * s.grad_accum * world_size,
        "gradient_clipping": lc.grad_clip, "lr": lc.lr, "weight_decay": lc.weight_decay,
        "betas": list(s.betas), "stage": lc.zero_stage,
    }
    if lc.deepspeed_config:
        cfg = _fill_auto(load_ds_file(lc.deepspeed_config), auto)
        cfg.setdefault("train_micro_batch_size_per_gpu", lc.micro_batch_size)
        cfg.setdefault("gradient_accumulation_steps", s.grad_accum)
        return cfg
    zero: dict[str, Any] = {"stage": lc.zero_stage}
    if lc.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    if lc.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": lc.micro_batch_size,
        "gradient_accumulation_steps": s.grad_accum,
        "gradient_clipping": lc.grad_clip,
        # On CPU, torch's AdamW: DeepSpeed's CPU Adam op keeps beta^t as a running product
        # inside the process, so a resumed run's first update differs in the last bits.
        "optimizer": {"type": "AdamW", "params": {"lr": lc.lr, "betas": list(s.betas),
                                                 "weight_decay": lc.weight_decay,
                                                 **({} if on_gpu else {"torch_adam": True})}},
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16"},
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
    }


def lr_lambda(s: EngineSettings) -> Callable[[int], float]:
    """Multiplier of the base LR at optimiser step t: linear warm-up, then the schedule."""
    lc = s.learner

    def fn(t: int) -> float:
        if lc.warmup_steps and t < lc.warmup_steps:
            return (t + 1) / lc.warmup_steps
        if lc.schedule == "constant":
            return 1.0
        span = max(1, s.total_steps - lc.warmup_steps)
        frac = min(1.0, (t - lc.warmup_steps) / span)
        if lc.schedule == "linear":
            return max(0.0, 1.0 - frac)
        if lc.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * frac))
        raise ValueError(f"unknown schedule {lc.schedule!r}: use constant, linear or cosine")
    return fn


class PolicyHandle:
    """What `loss_fn` receives: the DeepSpeed engine (call it like the model; other attributes
    such as `device` and `global_steps` are the engine's) plus this rank's `critic`."""

    def __init__(self, engine, critic=None):
        self._engine, self.critic = engine, critic

    def __call__(self, *args, **kwargs):
        return self._engine(*args, **kwargs)

    def __getattr__(self, name):
        if name == "_engine":  # not yet set (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self._engine, name)


def hidden_size(config) -> int:
    for key in ("hidden_size", "d_model", "n_embd"):
        if isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    raise ValueError(f"cannot tell the hidden size of {type(config).__name__} for the critic")


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU copies of a state dict; tied tensors (one storage under two names, e.g. the input
    embedding and the LM head) are copied once and stay tied."""
    out, seen = {}, {}
    for k, v in state.items():
        key = (v.data_ptr(), v.dtype, tuple(v.shape), tuple(v.stride()), v.device)
        if v.numel() and key in seen:
            out[k] = seen[key]
            continue
        out[k] = seen[key] = v.detach().to("cpu", copy=True)
    return out


@dataclass
class StepMetrics:
    step: int
    loss: float
    grad_norm: float
    lr: float
    samples: int
    time_s: float
    extra: dict[str, float] = field(default_factory=dict)


def skip_cpu_shm_kernel() -> None:
    """Keep DeepSpeed from compiling its shared-memory all-reduce kernel on CPU.

    On a CPU-only machine DeepSpeed's communication backend compiles a C++ kernel at its first
    start-up (under `~/.cache/torch_extensions`, or `$TORCH_EXTENSIONS_DIR`). Only DeepSpeed's
    inference all-reduce uses it; training goes through the gloo process group either way. The
    build costs a compile on every fresh machine, and a build that is killed half-way leaves a
    `lock` file that makes every later start-up wait on it forever. So the kernel is marked
    unavailable, and DeepSpeed falls back to the process group as it does on CPUs without it.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


class PolicyEngine:
    """A DeepSpeed engine on this rank; collective calls must be made on every rank."""

    def __init__(self, settings: EngineSettings, rank: int = 0, world_size: int = 1,
                 local_rank: int = 0):
        import deepspeed

        self.s, self.rank, self.world_size = settings, rank, world_size
        self.on_gpu = torch.cuda.is_available()
        if self.on_gpu:
            torch.cuda.set_device(local_rank)
        else:
            skip_cpu_shm_kernel()
        deepspeed.init_distributed(dist_backend="nccl" if self.on_gpu else "gloo",
                                   auto_mpi_discovery=False)
        self._seed_all(settings.seed + rank)
        self.ds_config = build_ds_config(settings, world_size, self.on_gpu)
        model = load_model(settings.model_path)
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
            config=self.ds_config,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(settings)))
        self.critic = None
        if settings.critic:
            from learner.critic import Critic

            # Seeded with settings.seed (not seed + rank): every rank starts identical.
            lc = settings.learner
            self.critic = Critic(lc.critic, hidden_size(model.config), lc.critic_hidden,
                                 lr=lc.critic_lr, grad_clip=lc.grad_clip,
                                 grad_accum=settings.grad_accum,
                                 seed=settings.seed, device=self.engine.device)
        self.handle = PolicyHandle(self.engine, self.critic)
        self.step = 0

    @property
    def model(self):
        return self.engine.module

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @staticmethod
    def _seed_all(seed: int) -> None:
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            import numpy as np

            np.random.seed(seed % (2 ** 32))
        except ImportError:
            pass

    def train_step(self, micro_batches: list[Any],
                   loss_fn: Callable[[Any, Any], tuple[torch.Tensor, dict[str, float]]]
                   ) -> StepMetrics:
        """One optimiser step over `grad_accum` micro-batches of this rank's shard.

        `loss_fn(model, micro_batch) -> (loss, metrics)`, `model` a `PolicyHandle`; DeepSpeed
        divides each loss by the number of accumulation steps, so `loss_fn` returns the
        micro-batch mean. The critic, if any, steps after the policy."""
        if len(micro_batches) != self.s.grad_accum:
            raise ValueError(f"expected {self.s.grad_accum} micro-batches (grad_accum), "
                             f"got {len(micro_batches)}")
        t0 = time.perf_counter()
        self.engine.train()
        total, sums, counts, samples = 0.0, {}, {}, 0
        own_norm = None
        for i, mb in enumerate(micro_batches):
            loss, metrics = loss_fn(self.handle, mb)
            self.engine.backward(loss)
            if i == len(micro_batches) - 1 and self._zero_stage() == 0:
                # DeepSpeed reports no global norm without ZeRO in fp32: take it before the
                # step clips and clears the accumulated gradients.
                own_norm = self._grad_norm()
            self.engine.step()
            total += float(loss.detach())
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1
            samples += int(mb.shape[0]) if torch.is_tensor(mb) else int(getattr(mb, "num_samples", 0))
        self.step += 1
        norm = self.engine.get_global_grad_norm()
        if norm is None:
            norm = own_norm
        n = len(micro_batches)
        # each metric averaged over the micro-batches that report it (with sl_mode=alternate
        # the RL and supervised terms come from different micro-batches)
        extra = {k: v / counts[k] for k, v in sums.items()}
        if self.critic is not None:
            extra.update(self.critic.step(self.world_size))
        return StepMetrics(step=self.step, loss=total / n,
                           grad_norm=float(norm) if norm is not None else float("nan"),
                           lr=float(self.scheduler.get_last_lr()[0]), samples=samples,
                           time_s=time.perf_counter() - t0, extra=extra)

    def _zero_stage(self) -> int:
        return int(self.engine.zero_optimization_stage())

    def _grad_norm(self) -> float | None:
        grads = [p.grad.detach().float() for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return None
        return float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads])))

    # -- weights -----------------------------------------------------------------------------
    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """Full weights on rank 0 (None elsewhere); gathers ZeRO-3 shards (collective)."""
        model = self.model
        if self.ds_config.get("zero_optimization", {}).get("stage", 0) == 3:
            import deepspeed

            # Every rank takes part in the gather; rank 0 keeps a CPU copy. The names are the
            # module's own state_dict keys, tied weights included, as samplers expect.
            with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
                if self.rank == 0:
                    return _cpu_copy(model.state_dict())
            return None
        if self.rank != 0:
            return None
        return _cpu_copy(model.state_dict())

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, folder: str | os.PathLike, tokenizer=None,
                        client_state: dict | None = None) -> None:
        """DeepSpeed state (optimiser, scheduler, step, RNG, critic) and an HF policy in
        `hf/`."""
        folder = Path(folder)
        state = dict(client_state or {})
        state.update(learner_step=self.step)
        self.engine.save_checkpoint(str(folder / "deepspeed"), tag=f"step{self.step}",
                                    client_state=state)
        torch.save(self._rng_state(), folder / "deepspeed" / f"rng_rank{self.rank}.pt")
        if self.critic is not None:  # identical on every rank; each keeps its own copy
            torch.save(self.critic.state_dict(),
                       folder / "deepspeed" / f"critic_rank{self.rank}.pt")
        full = self.full_state_dict()
        if self.rank == 0:
            self.model.save_pretrained(str(folder / "hf"), state_dict=full,
                                       safe_serialization=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(str(folder / "hf"))

    def load_checkpoint(self, folder: str | os.PathLike) -> dict:
        _, state = self.engine.load_checkpoint(str(Path(folder) / "deepspeed"))
        if state is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint under {folder}/deepspeed")
        self.step = int(state["learner_step"])
        rng = Path(folder) / "deepspeed" / f"rng_rank{self.rank}.pt"
        if rng.exists():
            self._set_rng_state(torch.load(rng, weights_only=False))
        if self.critic is not None:
            self._load_critic(Path(folder) / "deepspeed")
        return state

    def _load_critic(self, folder: Path) -> None:
        own, first = folder / f"critic_rank{self.rank}.pt", folder / "critic_rank0.pt"
        path = own if own.exists() else first  # more ranks than when saved: rank 0's copy
        if not path.exists():
            import warnings

            warnings.warn(f"no critic state under {folder}: the critic starts fresh")
            return
        self.critic.load_state_dict(torch.load(path, map_location=self.device,
                                               weights_only=False))

    def _rng_state(self) -> dict:
        out = {"python": random.getstate(), "torch": torch.get_rng_state()}
        try:
            import numpy as np

            out["numpy"] = np.random.get_state()
        except ImportError:
            pass
        if self.on_gpu:
            out["cuda"] = torch.cuda.get_rng_state()
        return out

    def _set_rng_state(self, st: dict) -> None:
        random.setstate(st["python"])
        torch.set_rng_state(st["torch"])
        if "numpy" in st:
            import numpy as np

            np.random.set_state(st["numpy"])
        if self.on_gpu and "cuda" in st:
            torch.cuda.set_rng_state(st["cuda"])
