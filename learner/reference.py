"""The frozen reference policy of the KL penalty, held the way the policy is held.

    ref = reference_model(path, engine)      # engine: the rank's DeepSpeed engine (or handle)
    with torch.no_grad():
        out = ref(input_ids=..., attention_mask=...)

* ZeRO 0-2: every rank holds the full policy anyway; the reference is a second full copy on
  the rank's device, in the policy's precision (bf16 / fp16 / fp32), so that the two
  log-probs differ by their weights only.
* ZeRO-3: the reference goes through `deepspeed.initialize` with a ZeRO stage-3 config and
  no optimizer (DeepSpeed's ZeRO inference): its parameters are partitioned over the ranks
  like the policy's (each rank keeps a 1/world shard, `param.ds_tensor`, of each parameter
  larger than the policy's `stage3_param_persistence_threshold`), gathered layer by layer
  for each forward pass and released after it, and offloaded to CPU when the policy's
  parameters are. A forward pass is then a collective: every rank must run it the same
  number of times, which the objective does (each rank computes the reference log-probs of
  each of its RL micro-batches, and all ranks run the same micro-batch layout).

The weights are read on CPU first (`learner.engine.load_model`), as for the policy, and
only the shards move to the device.
"""

from __future__ import annotations

import torch


def reference_model(path: str, engine) -> torch.nn.Module:
    """A frozen, eval-mode copy of the model at `path`, placed like `engine`'s policy."""
    from learner.engine import load_model

    model = load_model(path)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    stage = int(engine.zero_optimization_stage()) if hasattr(
        engine, "zero_optimization_stage") else 0
    if stage != 3:
        return model.to(device=engine.device, dtype=_dtype(engine))
    import deepspeed

    ref, *_ = deepspeed.initialize(model=model, config=reference_ds_config(engine))
    ref.eval()
    return ref


def reference_ds_config(engine) -> dict:
    """ZeRO-3 inference config following the policy engine's: precision, partitioning
    threshold, parameter offload; no optimizer."""
    zero: dict = {"stage": 3,
                  "stage3_param_persistence_threshold": engine.zero_param_persistence_threshold()}
    offload = engine.zero_offload_param()  # None, or a config whose device may be "none"
    if offload is not None and offload.device != "none":
        zero["offload_param"] = {"device": "cpu"}
    return {"train_micro_batch_size_per_gpu": engine.train_micro_batch_size_per_gpu(),
            "zero_optimization": zero,
            "bf16": {"enabled": bool(engine.bfloat16_enabled())},
            "fp16": {"enabled": bool(engine.fp16_enabled())},
            "steps_per_print": 10 ** 9, "wall_clock_breakdown": False}


def _dtype(engine) -> torch.dtype:
    if getattr(engine, "bfloat16_enabled", lambda: False)():
        return torch.bfloat16
    if getattr(engine, "fp16_enabled", lambda: False)():
        return torch.float16
    return torch.float32
