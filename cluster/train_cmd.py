"""`rltf train`: online RL from unit-test feedback, from a laptop default to a Ray cluster.

    rltf train [--config FILE] [section.key=value ...] [--run-dir DIR] [--max-steps N]
               [--max-minutes M] [--resume RUN_DIR]

With no arguments it runs the embedded default (configs/tiny.yaml): a local Ray instance, the
tiny model warm-started on the built-in suite (cached after the first run), online training,
and held-out pass@1 before and after. Inside `ray job submit` it joins the job's cluster
(`cluster.address=auto`). The run folder (default runs/<preset>-<timestamp>) holds the
resolved config, metrics.jsonl, TensorBoard events, checkpoints, report.md with plots, and
summary.json with pass_at_1_before, pass_at_1_after (test split), the validation and test
figures with their 95% CIs per slice, steps and wall_s. SIGTERM or Ctrl-C
saves a checkpoint and exits cleanly; --resume continues such a run from its last checkpoint.

Differences from the paper: the warm start and the task suite are built here (no download);
the learner trains asynchronously on a bounded-staleness buffer, with a truncated importance
weight for samples from older weights.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--config", default=None, help="YAML preset (default: configs/tiny.yaml)")
    ap.add_argument("--run-dir", default=None, help="run folder (default runs/<preset>-<time>)")
    ap.add_argument("--max-steps", type=int, default=None, help="learner steps")
    ap.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    ap.add_argument("--resume", default=None, help="a run folder to continue")
    ap.add_argument("overrides", nargs="*", help="config overrides, section.key=value")


def load_problems(cfg) -> dict[str, list]:
    """{"train", "val", "test", "all"}: the built-in suite's splits, or the problems files
    (without data.val_file the test problems serve as validation too)."""
    from problems.gentests.dataset import read_problems
    from problems.synth import generate_suite

    if cfg.data.source == "synth":
        suite = generate_suite(cfg.data.synth_n, cfg.data.synth_seed)
        out = {s: [p for p in suite if p.split == s] for s in ("train", "val", "test")}
        return {**out, "all": suite}
    out = {}
    for name, path in (("train", cfg.data.train_file), ("val", cfg.data.val_file),
                       ("test", cfg.data.heldout_file)):
        probs, bad = read_problems(path) if path else ([], [])  # a JSONL file or datasets folder
        for b in bad:
            print(f"skipped {b}", file=sys.stderr)
        out[name] = probs
    out["all"] = out["train"] + out["val"] + out["test"]
    return out


def resolve_model(cfg, problems: dict, log) -> str:
    """The policy's starting point: model.path (a folder or a hub id, checked here so that a
    missing model stops the run before any actor starts; each actor resolves the name again
    in its own node's cache); for `tiny`, the folder of the embedded model, built and
    warm-started once and cached."""
    if cfg.model.path != "tiny":
        from learner.models import resolve_model as resolve

        folder = resolve(cfg.model.path)
        if folder != cfg.model.path:
            log(f"model {cfg.model.path}: {folder}")
        return cfg.model.path
    from cluster.warm_start import warm_start

    return warm_start(cfg, problems, log)


def engine_settings(cfg, model_path: str):
    from cluster.driver import micro_batches_per_step
    from learner.engine import EngineSettings

    return EngineSettings(model_path=model_path, learner=cfg.learner,
                          total_steps=cfg.train.max_steps, grad_accum=micro_batches_per_step(cfg),
                          seed=cfg.seed, critic=cfg.algo == "actor_critic")


def start_ray(cfg):
    import ray

    if ray.is_initialized():
        return False
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")
    if address:
        from cluster.auth import check_cluster_access, resolve_address

        address = resolve_address(address)
        check_cluster_access(address)  # a missing or wrong token: one line saying which
        ray.init(address=address, namespace=cfg.cluster.namespace, log_to_driver=True)
        return False
    # address="local": a new instance of this run's own, even where `ray start` has left a
    # cluster on this machine (plain ray.init() would join that one)
    ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=cfg.cluster.num_cpus,
             include_dashboard=False, namespace=cfg.cluster.namespace, log_to_driver=False)
    return True


def run(args: argparse.Namespace) -> int:
    from ray.exceptions import RayActorError

    from cluster import checkpoints
    from cluster.driver import Trainer
    from cluster.recovery import first_line, restart_until_built
    from cluster.run_log import RunLog, closing_lines, evaluation_summary, write_report
    from cluster.topology import build_topology
    from core.config_reading import dump_config, load_config

    resume = Path(args.resume) if args.resume else None
    overrides = list(args.overrides)
    if resume:
        config_path = resume / "config.yaml"
        run_dir = resume
        if not config_path.exists():
            from core.config_reading import ConfigError

            raise ConfigError(f"--resume {resume}: no config.yaml there; pass the folder of "
                              "an earlier `rltf train` run")
    else:
        config_path = Path(args.config) if args.config else DEFAULT_CONFIG
        run_dir = None
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.max_minutes is not None:
        overrides.append(f"train.max_minutes={args.max_minutes}")
    cfg = load_config(config_path, overrides)
    if run_dir is None:
        run_dir = Path(args.run_dir) if args.run_dir else \
            Path("runs") / f"{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    log = RunLog(run_dir)
    log.print(f"run folder: {run_dir}")
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:  # inside `ray job submit`
        for what, path in (("--run-dir", run_dir), ("model.cache_dir", cfg.model.cache_dir)):
            if not Path(path).is_absolute():
                log.print(f"note: {what} {path} is inside this job's copy of the working "
                          "directory, which Ray deletes later; give it a path on storage "
                          "every node sees to keep it (and to --resume from it)")
    t0 = time.time()
    started = start_ray(cfg)
    try:
        from cluster.startup import check_resources

        # what the cluster cannot hold stops the run here, in seconds
        check_resources(cfg, log=log.print)
        problems = load_problems(cfg)
        model_path = resolve_model(cfg, problems, log.print)
    except BaseException:
        if started:
            import ray

            ray.shutdown()
        raise
    trainer = Trainer(cfg, run_dir, model_path, problems, log)
    trainer.install_signals()
    topo = None
    restarts = 0
    try:
        topo = build_topology(cfg, model_path, engine_settings(cfg, model_path),
                              run_dir=run_dir, log=log.print)
        if resume:
            folder = checkpoints.latest_complete(run_dir)
            if folder is None:
                raise FileNotFoundError(f"--resume {run_dir}: no checkpoint there to resume "
                                        "from (no complete checkpoints/step-N folder)")
            checkpoints.restore(trainer, topo, folder)
            log.print(f"resumed from {folder} at step {trainer.step}")
        from learner.models import is_encoder_decoder, load_config, load_tokenizer

        tokenizer = load_tokenizer(model_path)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        enc_dec = is_encoder_decoder(load_config(model_path))
        while True:
            try:
                out = trainer.run(topo, tokenizer, enc_dec)
                break
            except RayActorError as err:
                # A learner rank died (or another actor where no finer repair applies):
                # rebuild the topology and continue from the last checkpoint, losing at most
                # learner.checkpoint_every steps.
                if trainer.stop_reason:
                    raise
                why = first_line(err)
            # (outside the except block: its traceback holds the old actors' handles)
            controller = topo.controller

            def rebuild(n: int, why: str):
                nonlocal topo
                folder = checkpoints.latest_complete(run_dir)
                log.print(f"[step {trainer.step}] an actor died ({why}); restart {n}/"
                          f"{cfg.train.restarts} from {folder or 'the start'}")
                if topo is not None:  # (a restart cut short leaves its actors to tear down)
                    topo.shutdown(keep_controller=True)
                # Ray keeps a dead actor's name taken while a handle to it lives: drop them
                topo = None
                gc.collect()
                trainer.programs_abandoned += sum(trainer.outstanding.values())  # pool too
                trainer.outstanding.clear()
                topo = build_topology(cfg, model_path, engine_settings(cfg, model_path),
                                      controller=controller, run_dir=run_dir, log=log.print)
                if folder is not None:
                    checkpoints.restore(trainer, topo, folder, keep_totals=True)
                else:
                    trainer.reset_to_start()
                return topo

            topo, restarts = restart_until_built(rebuild, restarts, cfg.train.restarts, why)
        trainer.restarts = restarts
        if trainer.last_checkpoint_step != trainer.step:
            trainer.checkpoint(topo)
    finally:
        if topo is not None:
            topo.shutdown()
        if started:
            import ray

            ray.shutdown()
    test = trainer.figures["test"]
    first, last = (min(test), max(test)) if test else (None, None)
    summary = {
        "preset": cfg.preset,
        "pass_at_1_before": test[first]["all"]["pass@1" if cfg.train.eval_samples
                                              else "greedy"]["mean"] if test else None,
        "pass_at_1_after": test[last]["all"]["pass@1" if cfg.train.eval_samples
                                             else "greedy"]["mean"] if test else None,
        "steps": trainer.step, "policy_version": trainer.version,
        "wall_s": time.time() - t0, "train_wall_s": out["wall_s"],
        "stopped_by": trainer.stop_reason or "max_steps",
        "learner_busy_fraction": trainer.learner_busy_s / max(out["wall_s"], 1e-9),
        "samples_generated": trainer.samples_generated,
        "programs_judged": trainer.programs_judged,
        "outcomes": dict(trainer.outcomes), "sampler_restarts": trainer.sampler_restarts,
        "restarts": restarts, "buffer_restarts": trainer.buffer_restarts,
        "experiences_lost": trainer.experiences_lost, "store_restarts": trainer.store_restarts,
        "programs_submitted": trainer.programs_submitted,
        "programs_abandoned_by_restarts": trainer.programs_abandoned,
        "programs_in_flight_at_end": sum(trainer.outstanding.values()),
        "results_unexpected": trainer.results_unexpected,
        "phase_seconds": {k: round(v, 2) for k, v in trainer.timer.totals.items()},
        "model": model_path,
        "evaluation": evaluation_summary(cfg, trainer.figures, len(problems["val"]) > 0),
    }
    if cfg.model.path == "tiny":
        from cluster.warm_start import warm_curve

        summary["warm_start_curve"] = warm_curve(model_path)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.close()
    write_report(run_dir, summary)
    for line in closing_lines(summary):
        print(line)
    before, after = summary["pass_at_1_before"], summary["pass_at_1_after"]
    print(f"held-out pass@1: {before * 100:.1f}% before -> {after * 100:.1f}% after "
          f"({trainer.step} steps, {summary['wall_s']:.0f}s); run folder {run_dir}")
    return 0
