"""The checks across settings of a run's config, each a small function returning what is wrong.

Each check names the top-level settings it reads (sections such as `learner`, or `algo`); it
returns None when the settings agree, else `(dotted path, message that names the fix)`. A
check is skipped when a setting it reads is itself invalid, so that one load reports every
field error and every conflict among the valid settings at once (`core/config_reading.py`):
`RLTFConfig` raises the conflicts it finds as one `Conflicts`.

Some checks refuse a setting the code would otherwise rewrite or ignore at run time: a value
critic with a reward baseline, a greedy baseline without the greedy sample, a truncated
importance weight under the clipped surrogate, a warm-up fill smaller than one learner batch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable


class Conflicts(ValueError):
    """Settings that are each valid but do not agree: (dotted path, message with the fix)."""

    def __init__(self, found: list[tuple[str, str]]):
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in found))
        self.found = found


Check = Callable[[Any], "tuple[str, str] | list[tuple[str, str]] | None"]
CHECKS: list[tuple[tuple[str, ...], Check]] = []


def check(*reads: str) -> Callable[[Check], Check]:
    """Register a check that reads the top-level settings `reads`."""
    def register(fn: Check) -> Check:
        CHECKS.append((reads, fn))
        return fn
    return register


def conflicts(cfg: Any, broken: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Every (dotted path, message) of the checks whose settings are not in `broken`."""
    out = []
    for reads, fn in CHECKS:
        if broken.isdisjoint(reads):
            found = fn(cfg) or []
            out += found if isinstance(found, list) else [found]
    return out


@check("executor")
def _program_budget(cfg):
    ex = cfg.executor
    if ex.program_budget_s < ex.time_limit_s:
        return ("executor.program_budget_s",
                f"must be at least executor.time_limit_s ({ex.program_budget_s} < "
                f"{ex.time_limit_s}); raise program_budget_s or lower time_limit_s")


@check("executor")
def _autoscale_bounds(cfg):
    ex = cfg.executor
    if ex.autoscale and not ex.min_workers <= ex.workers <= ex.max_workers:
        return ("executor.workers",
                f"executor.autoscale needs executor.min_workers ({ex.min_workers}) <= "
                f"executor.workers ({ex.workers}) <= executor.max_workers ({ex.max_workers}); "
                "change one of them")


@check("learner")
def _batch_split(cfg):
    lr = cfg.learner
    per_rank, rem = divmod(lr.batch_size, lr.ranks)
    if rem or per_rank % lr.micro_batch_size:
        fit = lr.ranks * lr.micro_batch_size * max(1, per_rank // lr.micro_batch_size)
        return ("learner.batch_size",
                f"{lr.batch_size} must split into learner.ranks ({lr.ranks}) shards that are "
                f"whole multiples of learner.micro_batch_size ({lr.micro_batch_size}); e.g. "
                f"set learner.batch_size={fit}")


@check("algo", "learner", "reward")
def _value_critic_is_the_baseline(cfg):
    if cfg.algo == "actor_critic" and cfg.learner.critic == "value" \
            and cfg.reward.baseline != "none":
        return ("reward.baseline",
                f"algo=actor_critic with learner.critic=value: the value head is the baseline, "
                f"so the rewards must come without one; set reward.baseline=none (got "
                f"{cfg.reward.baseline})")


@check("reward", "sampler")
def _greedy_baseline_needs_greedy_sample(cfg):
    if cfg.reward.baseline == "greedy" and not cfg.sampler.include_greedy:
        return ("reward.baseline",
                "reward.baseline=greedy needs the greedy sample of each problem; set "
                "sampler.include_greedy=true or reward.baseline=leave_one_out")


@check("learner")
def _ratio_max_under_clipping(cfg):
    lr = cfg.learner
    if lr.clip_eps is not None and lr.importance_ratio_max is not None:
        return ("learner.importance_ratio_max",
                f"{lr.importance_ratio_max} has no effect while learner.clip_eps "
                f"({lr.clip_eps}) is set (the clipped surrogate corrects for older samples "
                "itself); set learner.importance_ratio_max=null, or learner.clip_eps=null to "
                "use the truncated importance weight instead")


@check("learner")
def _alternate_needs_supervised_term(cfg):
    if cfg.learner.sl_mode == "alternate" and cfg.learner.sl_weight == 0:
        return ("learner.sl_mode",
                "learner.sl_mode=alternate with learner.sl_weight=0 has no supervised term to "
                "alternate with; set learner.sl_mode=mix (or a positive learner.sl_weight)")


@check("buffer", "learner")
def _buffer_holds_a_batch(cfg):
    if cfg.buffer.capacity < cfg.learner.batch_size:
        return ("buffer.capacity",
                f"{cfg.buffer.capacity} is smaller than one learner batch "
                f"({cfg.learner.batch_size}); raise buffer.capacity")


@check("buffer", "learner")
def _min_fill_is_at_least_a_batch(cfg):
    # a learner step needs a whole batch: a smaller fill would be silently raised to one
    if cfg.buffer.min_fill < cfg.learner.batch_size:
        return ("buffer.min_fill",
                f"{cfg.buffer.min_fill} is less than one learner batch "
                f"({cfg.learner.batch_size}), which a learner step waits for anyway; set "
                f"buffer.min_fill={cfg.learner.batch_size} or more")


@check("train", "buffer")
def _queue_holds_a_fill(cfg):
    # samplers pause at max_queue samples not yet trained on, the buffer's included: below
    # min_fill, every learner step would wait for calls made one at a time
    if cfg.train.max_queue < cfg.buffer.min_fill:
        return ("train.max_queue",
                f"{cfg.train.max_queue} is less than buffer.min_fill ({cfg.buffer.min_fill}): "
                "samplers pause at that many samples not yet trained on, the buffer's "
                f"included; set train.max_queue={2 * cfg.buffer.min_fill} or more")


@check("sampler", "learner", "cluster")
def _enough_gpus(cfg):
    s, lr = cfg.sampler, cfg.learner
    gpus = s.actors * s.gpus_per_actor + lr.ranks * lr.gpus_per_rank
    if cfg.cluster.num_gpus is not None and gpus > cfg.cluster.num_gpus:
        return ("cluster.num_gpus",
                f"samplers and learner ask for {gpus:g} GPUs but cluster.num_gpus is "
                f"{cfg.cluster.num_gpus}; lower sampler.actors, learner.ranks or their "
                "gpus_per_actor / gpus_per_rank")


@check("weights", "learner", "sampler")
def _collective_needs_gpu_samplers(cfg):
    if cfg.weights.transport == "collective" and cfg.learner.gpus_per_rank \
            and not cfg.sampler.gpus_per_actor:
        return ("weights.transport",
                "collective with GPU learners needs GPU samplers (nccl); set "
                "sampler.gpus_per_actor or weights.transport=object_store")


@check("model")
def _model_folder_exists(cfg):
    path = cfg.model.path
    looks_local = path.startswith((".", "/", "~")) or (
        os.sep in path and Path(path.split(os.sep)[0]).exists())
    if path != "tiny" and looks_local and not Path(path).expanduser().exists():
        return ("model.path",
                f"{path} does not exist; point it at a folder with a save_pretrained model, "
                "or use model.path=tiny")


@check("data")
def _files_only_with_jsonl(cfg):
    given = [n for n in ("train_file", "heldout_file", "val_file") if getattr(cfg.data, n)]
    if cfg.data.source == "synth" and given:
        return (f"data.{given[0]}",
                "is not read while data.source=synth (the built-in suite); set "
                "data.source=jsonl to train on problems files, with both data.train_file and "
                "data.heldout_file")


@check("train")
def _evaluation_evaluates_something(cfg):
    if cfg.train.eval_samples == 0 and not cfg.train.eval_greedy:
        return ("train.eval_samples",
                "train.eval_samples=0 with train.eval_greedy=false evaluates nothing; set "
                "eval_samples >= 1 or eval_greedy=true")


@check("data")
def _val_file_exists(cfg):
    if cfg.data.val_file and not Path(cfg.data.val_file).exists():
        return ("data.val_file",
                f"{cfg.data.val_file} does not exist; point it at a problems file or leave it "
                "unset")


@check("data")
def _jsonl_needs_files(cfg):
    if cfg.data.source != "jsonl":
        return None
    return [(f"data.{name}", f"data.source=jsonl needs data.{name} pointing at an existing "
             f"problems file (got {f!r})")
            for name, f in (("train_file", cfg.data.train_file),
                            ("heldout_file", cfg.data.heldout_file))
            if not f or not Path(f).exists()]
