"""Held-out evaluation during training: pass@1 on the validation or test split with the
samplers' current weights, logged as a metrics row and kept in the trainer's figures."""

from __future__ import annotations

import json


def evaluate(trainer, topo, split: str = "val") -> float:
    """pass@1 on the validation or test split with the samplers' current weights (the
    `rltf eval` code path): eval_samples programs per problem at eval_temperature and the
    greedy one, each figure with its 95% CI, overall and per slice. The per-problem
    counts go to eval/<split>-step-N.json. At step 0 the warm start's stored evaluation
    is used when there is one (cluster/warm_start.py)."""
    import ray

    from cluster.warm_start import cached_eval, eval_problems, eval_settings
    from evaluation.run import evaluate

    settings = eval_settings(trainer.cfg, trainer.prompt_limit)
    samplers = topo.samplers

    def generate(problems):
        chunks = [list(problems[i::len(samplers)]) for i in range(len(samplers))]
        refs = [s.generate.remote(c, settings) for s, c in zip(samplers, chunks) if c]
        return [(x.task_id, x.program, x.is_greedy) for out in ray.get(refs) for x in out]

    problems = eval_problems(trainer.cfg, trainer.eval_sets[split])
    with trainer.timer("evaluate"):
        res = cached_eval(trainer.model_path, trainer.cfg, split, problems) \
            if trainer.step == 0 else None
        if res is None:
            _, res = evaluate(problems, generate, topo.pool, n=settings.n,
                              temperature=settings.temperature, split=split)
    folder = trainer.run_dir / "eval"
    folder.mkdir(exist_ok=True)
    (folder / f"{split}-step-{trainer.step:06d}.json").write_text(json.dumps(res.to_json()))
    value = res.headline()
    figures = res.figures()
    trainer.figures[split][trainer.step] = figures
    if split == "val":
        trainer.pass_at_1[trainer.step] = value
    row = {}
    for name, fig in figures.items():
        tail = "" if name == "all" else f"/{name}"
        for what in ("pass@1", "greedy"):
            if what in fig:
                row[f"{'eval' if split == 'val' else 'test'}/{what}{tail}"] = \
                    fig[what]["mean"]
    row.update({f"{split}_outcome/{k}": v for k, v in res.outcomes.items()})
    if split == "val":  # the series settings are chosen on
        row["eval/pass@1"] = value
    trainer.log.step(trainer.step, row)
    for line in res.lines():
        trainer.log.print(f"[step {trainer.step}] {line}")
    return value
