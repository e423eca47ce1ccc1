"""The online training driver: samplers -> executor pool -> replay buffer -> learner -> weights.

Everything runs at once. Samplers keep generating from the training problems while the
executor pool judges and the learner trains. `Trainer.training_step` is one turn of the
driver's loop, a sequence of flat, timed phases (`cluster/step_report.py:PhaseClock`; no
phase runs inside another, so no second counts twice):

    control   once a second: `rltf scale` requests, autoscaling, dead bookkeeping actors
    generate  hand idle samplers a draw of problems (unless the executor backlog is full);
              each makes one parcel of samples per executor actor
    wait      until a sampler, an executor or a learner rank answers, or control is due
    judge     hand each parcel to the executor pool by reference (an executor judges it,
              turns it into experiences in the replay buffer and answers with a summary
              of counts); count the summaries that came back
    learn     when a batch is ready and the learner is free, start a learner step: each
              rank takes its share from the buffer by reference and collates it itself
and once a learner step has finished:
    sync      every K steps publish version N+1 of the weights (samplers pick it up): a
              policy version counts publishes, not learner steps, and the buffer's
              staleness bound is in versions
    report    the step's `StepReport`: metrics row, exported metrics, console line
    evaluate  validation pass@1 every E steps; validation and test before and after
    checkpoint every C steps, on SIGTERM/Ctrl-C, and at the end

Backpressure: a sampler gets new work only while fewer than `train.max_queue` samples wait
for the learner (being generated, in the executor pool, in the buffer), so the samplers do
not outrun the learner; the buffer is bounded by its capacity and staleness bound. The run's
state and counters live in `TrainerState` (`cluster/trainer_state.py`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.recovery import evaluate_safely
from cluster.step_report import StepReport
from cluster.trainer_state import TrainerState
from learner.step_batches import BatchSettings

if TYPE_CHECKING:
    from cluster.learner_group import ShareStep

__all__ = ["Trainer", "make_objective", "micro_batches_per_step", "batch_settings"]


def make_objective(cfg, reference_path: str):
    from learner.objectives import ActorCriticObjective, RLTFObjective

    kind = ActorCriticObjective if cfg.algo == "actor_critic" else RLTFObjective
    return kind(learner=cfg.learner, reference_path=reference_path)


def batch_settings(cfg, prompt_limit: int | None = None) -> BatchSettings:
    """What shapes a step's micro-batches: the learner section and what the run derives."""
    lc = cfg.learner
    return BatchSettings(lc, outcome_critic=cfg.algo == "actor_critic" and lc.critic == "outcome",
                         prompt_limit=prompt_limit)


def micro_batches_per_step(cfg) -> int:
    """Micro-batches one learner rank runs per optimizer step (DeepSpeed's gradient
    accumulation)."""
    return batch_settings(cfg).micro_batches()


@dataclass
class LoopState:
    """What is in flight between two turns of the loop."""

    gen: dict = field(default_factory=dict)  # sampler call ref -> sampler index
    learner_step: ShareStep | None = None  # the learner step in flight
    learner_ready: set = field(default_factory=set)  # its calls that have answered
    pool_refs: set = field(default_factory=set)  # the executor calls the last wait waited on
    buffer_grew: bool = True  # experiences added since the buffer's size was last asked
    buffer_seen: int = 0  # the buffer's size as last asked, with what was added and taken since
    learner_t0: float = 0.0
    ready: list = field(default_factory=list)  # refs the last wait returned
    last_control: float = 0.0
    last_log: float = 0.0

    @property
    def learner_refs(self) -> list | None:
        """The calls of the learner step in flight (its fetches, then its training)."""
        return self.learner_step.refs if self.learner_step is not None else None


class Trainer(TrainerState):
    """Drives one training run on a topology (`cluster/topology.py`)."""

    # -- the run -------------------------------------------------------------------------------
    def run(self, topo, tokenizer, enc_dec: bool) -> dict:
        import ray

        from learner.models import load_config, model_prompt_limit

        cfg = self.cfg
        self.prompt_limit = model_prompt_limit(cfg.sampler.max_prompt_tokens,
                                               load_config(self.model_path), tokenizer,
                                               cfg.sampler.max_new_tokens)
        self.objective = make_objective(cfg, self.model_path)
        # put once, passed by reference: samplers fetch the list of the problems'
        # references and draw from it, executors fetch the problems of the groups they judge
        # and the reward settings, so the driver sends neither with each call
        self.problem_set = [ray.put([ray.put(p) for p in self.train_problems])]
        self.reward_ref = ray.put(cfg.reward)
        self.settings = self.sampler_settings()
        # each learner rank collates its own batches: what it needs, once
        refs = [p for p in self.train_problems if p.solutions] if cfg.learner.sl_weight else []
        ray.get([a.setup_batches.remote(batch_settings(cfg, self.prompt_limit), refs,
                                        cfg.seed + 1) for a in topo.learner.actors])
        self.t_start = time.time()
        if 0 not in self.figures["test"]:
            if cfg.train.eval_val:
                evaluate_safely(self, topo, "val")
            evaluate_safely(self, topo, "test")
        loop = LoopState(last_control=time.time(), last_log=time.time())
        deadline = (self.t_start + cfg.train.max_minutes * 60) if cfg.train.max_minutes else None
        while self.step < cfg.train.max_steps and not self.stop_reason:
            if deadline and time.time() > deadline:
                self.stop_reason = "time limit"
                break
            self.training_step(topo, loop)
        return self.finish(topo, loop)

    def training_step(self, topo, loop: LoopState) -> StepReport | None:
        """One turn of the loop, phase after phase; the report of a learner step that
        finished in it, else None."""
        if time.time() - loop.last_control >= 1.0:
            loop.last_control = time.time()
            with self.timer("control"):
                self.control(topo)
        with self.timer("generate"):
            self.generate(topo, loop)
        with self.timer("wait"):
            self.wait(topo, loop)
        with self.timer("judge"):
            self.judge(topo, loop)
        with self.timer("learn"):
            metrics_list = self.learn(topo, loop)
        report = None
        if metrics_list is not None:
            report = self._finish_step(topo, metrics_list, loop.learner_t0, self.t_start)
        if time.time() - loop.last_log > 30:
            loop.last_log = time.time()
            self.log.print(f"[step {self.step}] generated {self.samples_generated}, "
                           f"judged {self.programs_judged}, backlog {topo.pool.backlog()}")
        return report

    # -- phases --------------------------------------------------------------------------------
    def generate(self, topo, loop: LoopState) -> None:
        """Hand each idle sampler a draw of problems while fewer than `train.max_queue`
        samples wait for the learner (being generated, in the executor pool, in the buffer);
        each call makes one parcel of samples per executor actor."""
        busy = set(loop.gen.values())
        for i, sampler in enumerate(topo.samplers):
            if i in busy or not self.room_to_generate(len(loop.gen), topo.pool.backlog(),
                                                      loop.buffer_seen,
                                                      loop.learner_refs is not None):
                continue
            draw = self.next_draw(self.cfg.sampler.prompts_per_batch)
            loop.gen[sampler.generate_parcels.remote(self.problem_set, draw, self.cfg.seed,
                                                     self.settings, topo.pool.size)] = i

    def wait(self, topo, loop: LoopState) -> None:
        """Until something happens: a sampler call, an executor call or a learner rank
        answers, or the next control tick is due. The loop turns once per event, not on a
        clock, so its cost per learner step follows the number of calls, not the step's
        length."""
        import ray

        learner = [r for r in loop.learner_refs or [] if r not in loop.learner_ready]
        loop.pool_refs = set(topo.pool.in_flight())
        waits = list(loop.gen) + learner + list(loop.pool_refs)
        timeout = min(1.0, max(0.0, loop.last_control + 1.0 - time.time()))
        loop.ready = ray.wait(waits, num_returns=1, timeout=timeout)[0] if waits else []
        loop.learner_ready.update(r for r in loop.ready if r in learner)
        if not waits:
            time.sleep(timeout)

    def judge(self, topo, loop: LoopState) -> None:
        """Each parcel a sampler made to the executor pool, by reference (the samples go
        from the sampler to the executor; the executor adds the experiences to the buffer);
        the summaries of the judged parcels into the accounting. What the driver sends and
        receives here is a few numbers and references per parcel, however many samples a
        parcel holds."""
        import ray
        from ray.exceptions import RayActorError

        from cluster.metrics import metrics

        m = metrics()
        submitted = False
        for ref in [r for r in loop.ready if r in loop.gen]:
            idx = loop.gen.pop(ref)
            try:
                parcels = ray.get(ref)
            except RayActorError:
                self.replace_sampler(topo, idx)
                continue
            for parcel in parcels:
                self.samples_generated += parcel.samples
                m.inc("samples_generated", parcel.samples, sampler=str(idx))
                topo.pool.submit_parcel(parcel.parcel_id, parcel.samples, (
                    [parcel.ref], self.reward_ref, topo.buffer, parcel.parcel_id))
                self.account_submitted(parcel.parcel_id, parcel.samples)
                submitted = True
        if not (submitted or loop.pool_refs.intersection(loop.ready)):
            return  # no executor call answered: nothing to collect
        for _, summary in topo.pool.poll_parcels(0.0):
            held = self.outstanding.get(summary.parcel_id)
            if summary.lost is not None and held is not None:
                self.log.print(f"[step {self.step}] parcel {summary.parcel_id} was not judged "
                               f"({summary.lost}); its {held} programs count as abandoned")
            self.account_parcel(summary)
            loop.buffer_grew = loop.buffer_grew or summary.kept > 0
            loop.buffer_seen += summary.kept
        m.set("executor_queue_depth", topo.pool.queue_depth())
        m.set("executor_busy_workers", topo.pool.busy_workers())
        m.set("executor_pool_size", topo.pool.size)

    def learn(self, topo, loop: LoopState) -> list | None:
        """Start a learner step when the learner is free and the buffer holds a batch; the
        ranks' metrics once the running one has finished."""
        import ray

        from cluster.learner_group import ShareStep

        lc = self.cfg.learner
        step = loop.learner_step
        if step is not None:
            if not loop.learner_ready.intersection(loop.ready):
                return None  # no rank answered in this turn
            if not step.poll():  # a dead rank raises here (train_cmd restarts the run)
                return None
            loop.learner_step = None
            loop.learner_ready.clear()
            loop.buffer_grew = True  # what the step left may make the next batch
            if step.lost:
                # the buffer died holding the shares (Ray restarts it empty) before every
                # rank fetched its own: no rank stepped, each dropped what it held;
                # check_bookkeeping counts the experiences lost with the buffer
                self.log.print(f"[step {self.step}] a share of the batch was lost with the "
                               f"replay buffer's process before every learner rank fetched "
                               f"it (shares held: {step.sizes}); no rank stepped")
                return None
            return step.metrics
        if not loop.buffer_grew:  # nothing added since the buffer last had too few
            return None
        loop.buffer_grew = False
        size = loop.buffer_seen = ray.get(topo.buffer.__len__.remote())
        if size >= self.cfg.buffer.min_fill:  # at least one batch (core/checks.py)
            # the buffer splits a batch into one share per rank; each rank fetches its
            # share from the buffer and collates it (the driver holds references only), and
            # the ranks step only once every one of them holds its share (ShareStep)
            shares = ray.get(topo.buffer.draw_shares.remote(lc.batch_size, lc.ranks))
            if shares:
                loop.buffer_seen = max(0, loop.buffer_seen - lc.batch_size)
                loop.learner_t0 = time.perf_counter()
                loop.learner_step = ShareStep(topo.learner.actors, shares, self.objective)
        return None

    def finish(self, topo, loop: LoopState) -> dict:
        """A running step finishes and counts (the learner took it); samplers' calls end;
        the last weights are published and evaluated."""
        import ray
        from ray.exceptions import RayActorError

        metrics = loop.learner_step.result() if loop.learner_step is not None else None
        if metrics is not None:
            self._finish_step(topo, metrics, loop.learner_t0, self.t_start, stopping=True)
        for ref in list(loop.gen):
            try:
                ray.get(ref)
            except RayActorError:
                pass
        wall = time.time() - self.t_start
        stopped_by_signal = bool(self.stop_reason and self.stop_reason.startswith("signal"))
        if self.step > 0 and self.step not in self.figures["test"] and not stopped_by_signal:
            if self.versions.published_step != self.step:
                with self.timer("sync"):
                    self.publish(topo)
            if self.step not in self.pass_at_1 and self.cfg.train.eval_val:
                evaluate_safely(self, topo, "val")
            evaluate_safely(self, topo, "test")
        return {"wall_s": wall}

    def _finish_step(self, topo, metrics_list, learner_t0: float, t_start: float,
                     stopping: bool = False) -> StepReport:
        self.step += 1
        step_s = time.perf_counter() - learner_t0
        self.learner_busy_s += step_s
        return self.after_step(topo, metrics_list, step_s, t_start, stopping=stopping)

    def after_step(self, topo, metrics_list, step_s: float, t_start: float,
                   stopping: bool = False) -> StepReport:
        """The phases after a learner step: sync, report, evaluate, checkpoint."""
        cfg = self.cfg
        sync_s = None
        if self.versions.due(self.step):
            with self.timer("sync"):
                sync_s = self.publish(topo)
        with self.timer("report"):
            report = self.report(topo, metrics_list, step_s, t_start, sync_s)
        if (self.step % cfg.train.eval_every == 0 and self.step < cfg.train.max_steps
                and not stopping and cfg.train.eval_val):
            evaluate_safely(self, topo, "val")
        if self.step % cfg.learner.checkpoint_every == 0:
            self.checkpoint(topo)
        return report

    def report(self, topo, metrics_list, step_s: float, t_start: float,
               sync_s: float | None) -> StepReport:
        import ray

        from cluster.metrics import metrics

        m = metrics()
        stats = ray.get(topo.buffer.stats.remote())
        self.buffer_size_seen = stats.size
        for reason in ("stale", "full", "duplicate"):
            total = getattr(stats, f"dropped_{reason}")
            m.inc("buffer_dropped", self.dropped_seen.delta(reason, total), reason=reason)
        first = metrics_list[0]
        report = StepReport(
            step=self.step, losses=[x.loss for x in metrics_list], grad_norm=first.grad_norm,
            lr=first.lr, extra=dict(first.extra), step_s=step_s,
            learner_busy_s=self.learner_busy_s, wall_s=time.time() - t_start,
            samples_generated=self.samples_generated, programs_judged=self.programs_judged,
            buffer=stats, policy_version=self.version, outcomes=dict(self.window),
            rewards=tuple(self.reward_window), slices=dict(self.slice_window), sync_s=sync_s,
            phases=self.timer.take())
        row = report.row()
        self.log.step(self.step, row)
        if sync_s is not None:
            m.set("weight_sync_time_s", sync_s)
            m.set("policy_version", self.version)
        m.inc("learner_steps")
        m.set("learner_step_time_s", step_s)
        m.set("learner_loss", report.loss)
        if report.rewards[1]:  # the gauges keep their last value through a step without any
            m.set("reward_mean", report.reward_mean)
        if report.outcomes:
            m.set("pass_rate", report.outcome_fraction("pass"))
        m.set("buffer_size", stats.size)
        m.set("buffer_mean_age", stats.mean_age)
        m.set("learner_busy_fraction", row["learner/busy_fraction"])
        self.log.print(report.line(self.cfg.train.max_steps))
        self.window.clear()
        self.slice_window.clear()
        self.reward_window = [0.0, 0]
        return report

    # -- the rooms next door -------------------------------------------------------------------
    def evaluate(self, topo, split: str = "val") -> float:
        from cluster.held_out import evaluate

        return evaluate(self, topo, split)

    def publish(self, topo) -> float:
        from cluster.weights import publish

        return publish(self, topo)

    def control(self, topo) -> None:
        from cluster.controller import apply_control

        apply_control(self, topo)

    def replace_sampler(self, topo, idx: int) -> None:
        from cluster.recovery import replace_sampler

        replace_sampler(self, topo, idx)

    def checkpoint(self, topo) -> Path:
        from cluster.checkpoints import save

        return save(self, topo)
