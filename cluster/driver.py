"""The online training driver: samplers -> executor pool -> replay buffer -> learner -> weights.

Everything runs at once. Samplers keep generating from the training problems while the
executor pool judges and the learner trains; the driver's loop is a few named, timed phases:

    generate  hand idle samplers a batch of problems (unless the executor backlog is full)
    judge     send finished samples to the executor pool; turn complete groups of results
              into token rewards (reward/) and experiences in the replay buffer
    learn     when a batch is ready and the learner is free, start a learner step
    sync      every K steps publish version N+1 of the weights (samplers pick it up): a
              policy version counts publishes, not learner steps, and the buffer's
              staleness bound is in versions
    evaluate  validation pass@1 every E steps; validation and test before and after
    checkpoint every C steps, on SIGTERM/Ctrl-C, and at the end

Backpressure: a sampler gets new work only while the executor backlog is under
`train.max_queue`; the buffer is bounded by its capacity and staleness bound.
"""

from __future__ import annotations

import collections
import json
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.replay_buffer import Experience
from cluster.recovery import (check_bookkeeping, check_learner, evaluate_safely,
                              feasible_pool_size, is_dead, report_waiting_executors)
from core.config import RewardConfig
from core.records import OUTCOMES, Problem, Result, Solution
from reward import SampleFeedback, group_rewards


@dataclass
class Group:
    """The samples of one prompt from one sampler call: the baseline is taken over them."""

    problem: Problem
    samples: list = field(default_factory=list)
    results: dict = field(default_factory=dict)


@dataclass
class PolicyVersions:
    """Policy versions count publishes: version v is the v-th set of weights the samplers
    received (0: the starting weights), every `sync_every` learner steps. Samples carry the
    version that made them and the buffer's staleness bound is in versions, so with
    sync_every=10 and max_staleness=4 a sample lives for up to 40 learner steps after its
    weights were published."""

    sync_every: int = 1
    version: int = 0
    published_step: int = 0  # the learner step whose weights `version` is
    held: Any = None  # what the weight store was given for `version` (its [ObjectRef])

    def due(self, step: int) -> bool:
        """Whether learner step `step` publishes (every sync_every steps, never twice)."""
        return step % self.sync_every == 0 and step != self.published_step

    def publish(self, step: int) -> int:
        """The version number of a publish of the weights of learner step `step`: the next
        one, or the current one again when those weights were its weights already (a
        restore re-sends the same weights to a fresh topology)."""
        if step != self.published_step:
            self.version += 1
            self.published_step = step
            self.held = None
        return self.version

    def hold(self, weights: Any) -> None:
        """Remember what the weight store was given for the current version."""
        self.held = weights

    def resend(self) -> tuple[int, Any] | None:
        """After the weight store lost its copy (Ray restarted it empty): the version the
        samplers hold and exactly the weights published as it, or None when they are not
        held (then nothing is sent; the next scheduled publish fills the store). Never the
        learner's newer weights: as the next version they would add a publish and shift
        every later one; under the current number samples would carry a version whose
        weights did not make them."""
        return None if self.held is None else (self.version, self.held)

    def saved_with_checkpoint(self, step: int) -> bool:
        """Whether a checkpoint of learner step `step` must also hold the weights the
        samplers have: between publishes (after the first) they are an earlier step's, which
        the learner's state no longer has, and only they restore the schedule exactly."""
        return self.published_step != step and self.version > 0

    def after_restore(self, step: int, saved: Any = None) -> str:
        """What a restore of a checkpoint of learner step `step` (this clock loaded from its
        state) sends to the fresh samplers so that later publishes keep their steps and
        numbers, as in a run never interrupted:
        "republish": the learner's weights are this version's (a checkpoint at a publish);
        "none": the samplers' starting weights are this version (nothing published yet);
        "saved": the weights saved with the checkpoint are this version's (`saved`, now
        held); "next": they were not saved (a checkpoint written before they were), so the
        learner's weights go out as the next version and later versions move up by one."""
        if self.published_step == step:
            return "republish"
        if self.version == 0:
            return "none"
        if saved is not None:
            self.hold(saved)
            return "saved"
        return "next"


class PhaseTimer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = collections.defaultdict(float)

    def __call__(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.totals[name] += time.perf_counter() - self.t0

        return _Ctx()


def make_objective(cfg, reference_path: str):
    from learner.objectives import ActorCriticObjective, RLTFObjective

    kind = ActorCriticObjective if cfg.algo == "actor_critic" else RLTFObjective
    return kind(learner=cfg.learner, reference_path=reference_path)


def micro_batches_per_step(cfg) -> int:
    """Micro-batches one learner rank runs per optimizer step (DeepSpeed's gradient
    accumulation): its RL share in micro_batch_size pieces, and with sl_mode=alternate as
    many supervised micro-batches between them."""
    lc = cfg.learner
    rl = lc.batch_size // lc.ranks // lc.micro_batch_size
    return 2 * rl if lc.sl_mode == "alternate" else rl


def experiences_from_group(group: Group, rcfg: RewardConfig) -> tuple[list[Experience], list]:
    """Token rewards for every sample of the group (the greedy one included: it is the
    baseline), and an experience for each SAMPLED one: the greedy row was not drawn from the
    sampling policy, so it is never trained on. A generation that ended on EOS keeps the EOS
    token as its last RL token, with an empty character span (reward/tokens.py: no error line
    covers it; a whole-program error does)."""
    samples = group.samples
    results = [group.results[s.sample_id] for s in samples]
    feedback = [SampleFeedback(r, s.program, len(s.program_prefix), _offsets(s), s.is_greedy)
                for s, r in zip(samples, results)]
    rewards = group_rewards(feedback, rcfg)
    exps = []
    for s, r, rw in zip(samples, results, rewards):
        eos = [] if s.eos_token_id is None else [s.eos_token_id]
        if s.is_greedy or not (s.token_ids or eos):
            continue
        exps.append(Experience(
            task_id=s.task_id, sample_id=s.sample_id, prompt_ids=list(s.prompt_token_ids),
            completion_ids=list(s.token_ids) + eos, token_rewards=rw.token_rewards,
            behaviour_logprobs=list(s.logprobs) + ([s.eos_logprob] if eos else []),
            outcome=r.outcome, reward=rw.reward, policy_version=s.policy_version,
            passed=r.passed, total=r.total, is_greedy=False))
    return exps, results


def _offsets(sample) -> list[tuple[int, int]]:
    """The sample's token spans, plus an empty one at the end for its EOS token if any."""
    end = len(sample.completion)
    return list(sample.token_offsets) + ([(end, end)] if sample.eos_token_id is not None
                                         else [])


class Trainer:
    def __init__(self, cfg, run_dir: Path, model_path: str, problems: dict[str, list[Problem]],
                 log, resume_from: Path | None = None):
        self.cfg, self.run_dir, self.model_path = cfg, Path(run_dir), model_path
        self.train_problems = problems["train"]
        self.train_by_id = {p.task_id: p for p in self.train_problems}
        self._sl_pairs: dict[str, list] = {}  # task id -> tokenized reference solutions
        self.prompt_limit: int | None = None  # prompt tokens, the same for samplers and SL
        # the validation split serves choices of settings (every E steps); the test split is
        # evaluated before and after and only reported. Without one, the other serves.
        self.eval_sets = {"val": problems.get("val") or problems["test"],
                          "test": problems["test"] or problems.get("val", [])}
        self.log = log
        self.resume_from = resume_from
        self.rng = random.Random(cfg.seed)
        self.cursor = 0
        self.order = list(range(len(self.train_problems)))
        self.rng.shuffle(self.order)
        self.step = 0
        self.versions = PolicyVersions(cfg.weights.sync_every)
        # the supervised term draws from the problems with a reference; tests-only ones
        # reach the learner through RL alone
        self.sl_problems = [p for p in self.train_problems if p.solutions]
        if cfg.learner.sl_mode == "alternate" and not self.sl_problems:
            raise ValueError("learner.sl_mode=alternate needs training problems with reference "
                             "solutions for its supervised micro-batches, and these have none; "
                             "set learner.sl_mode=mix or learner.sl_weight=0")
        self.stop_reason: str | None = None
        self.timer = PhaseTimer()
        self.outcomes: collections.Counter = collections.Counter()
        self.window: collections.Counter = collections.Counter()
        self.slice_window: collections.Counter = collections.Counter()  # (slice, passed)
        self.rewards_window: list[float] = []
        self.samples_generated = 0
        self.programs_judged = 0
        self.learner_busy_s = 0.0
        self.pass_at_1: dict[int, float] = {}  # step -> validation pass@1
        self.figures: dict[str, dict[int, dict]] = {"val": {}, "test": {}}  # CIs, slices
        self.last_checkpoint_step = -1
        self.applied_request = 0  # the last `rltf scale` request applied
        self.last_resize = 0.0
        self.sampler_restarts = 0
        self.restarts = 0
        from cluster.metrics import Totals

        self.dropped_seen = Totals()
        # Every program submitted for training gets exactly one result: submitted = judged +
        # abandoned (in flight when a restart rebuilt the pool) + in flight at the end.
        self.outstanding: set[str] = set()
        self.programs_submitted = self.programs_abandoned = self.results_unexpected = 0
        self.buffer_restarts = self.experiences_lost = self.store_restarts = 0
        self.buffer_size_seen = 0
        self.refused_request: tuple[int, str] = (0, "")
        self.pool_cap_logged = 0
        self.last_wait_check = time.time()

    # -- signals -----------------------------------------------------------------------------
    def install_signals(self) -> None:
        def handler(signum, frame):
            if self.stop_reason and self.stop_reason.startswith("signal"):
                raise KeyboardInterrupt  # a second signal: stop now, without a checkpoint
            self.stop_reason = f"signal {signal.Signals(signum).name}"
            self.log.print(f"{self.stop_reason}: finishing the current step, saving a "
                           "checkpoint and exiting (send it again to stop at once)")

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- helpers -------------------------------------------------------------------------------
    def next_problems(self, k: int) -> list[Problem]:
        out = []
        for _ in range(k):
            if self.cursor >= len(self.order):
                self.rng.shuffle(self.order)
                self.cursor = 0
            out.append(self.train_problems[self.order[self.cursor]])
            self.cursor += 1
        return out

    def sampler_settings(self):
        from actors.sampler import SamplerSettings

        s = self.cfg.sampler
        return SamplerSettings(n=s.samples_per_prompt, include_greedy=s.include_greedy,
                               temperature=s.temperature, top_p=s.top_p,
                               max_new_tokens=s.max_new_tokens,
                               batch_size=max(s.samples_per_prompt * s.prompts_per_batch, 8),
                               max_prompt_tokens=self.prompt_limit)

    @property
    def version(self) -> int:
        """The policy version the samplers hold: the number of publishes so far."""
        return self.versions.version

    def state(self) -> dict:
        return {"step": self.step, "version": self.version,
                "published_step": self.versions.published_step, "cursor": self.cursor,
                "order": self.order, "rng": self.rng.getstate(),
                "pass_at_1": self.pass_at_1, "figures": self.figures,
                "outcomes": dict(self.outcomes),
                "samples_generated": self.samples_generated,
                "programs_judged": self.programs_judged,
                "learner_busy_s": self.learner_busy_s,
                "programs_submitted": self.programs_submitted}

    def reset_to_start(self) -> None:
        """After a restart with no checkpoint yet: learner steps begin again from the warm
        start (the rebuilt topology holds the starting weights and an empty buffer)."""
        self.step = 0
        self.versions = PolicyVersions(self.cfg.weights.sync_every)
        self.pass_at_1 = {k: v for k, v in self.pass_at_1.items() if k == 0}
        self.figures = {k: {s: f for s, f in v.items() if s == 0} for k, v in self.figures.items()}
        self.last_checkpoint_step = -1

    def load_state(self, st: dict) -> None:
        self.step, self.cursor = st["step"], st["cursor"]
        self.versions = PolicyVersions(self.cfg.weights.sync_every, st["version"],
                                       st.get("published_step", st["step"]))
        self.order = st["order"]
        rng = st["rng"]
        self.rng.setstate((rng[0], tuple(rng[1]), rng[2]))
        self.pass_at_1 = {int(k): v for k, v in st["pass_at_1"].items()}
        self.figures = {k: {int(s): f for s, f in v.items()}
                        for k, v in st.get("figures", {}).items()}
        self.outcomes = collections.Counter(st["outcomes"])
        self.samples_generated = st["samples_generated"]
        self.programs_judged = st["programs_judged"]
        self.learner_busy_s = st["learner_busy_s"]
        # programs in flight when the checkpoint was taken are never answered after it
        self.programs_submitted = st.get("programs_submitted", 0)
        self.programs_abandoned = self.programs_submitted - self.programs_judged

    # -- the run -------------------------------------------------------------------------------
    def evaluate(self, topo, split: str = "val") -> float:
        """pass@1 on the validation or test split with the samplers' current weights (the
        `rltf eval` code path): eval_samples programs per problem at eval_temperature and the
        greedy one, each figure with its 95% CI, overall and per slice. The per-problem
        counts go to eval/<split>-step-N.json. At step 0 the warm start's stored evaluation
        is used when there is one (cluster/warm_start.py)."""
        import ray

        from cluster.warm_start import cached_eval, eval_problems, eval_settings
        from evaluation.run import evaluate

        settings = eval_settings(self.cfg, self.prompt_limit)
        samplers = topo.samplers

        def generate(problems):
            chunks = [list(problems[i::len(samplers)]) for i in range(len(samplers))]
            refs = [s.generate.remote(c, settings) for s, c in zip(samplers, chunks) if c]
            return [(x.task_id, x.program, x.is_greedy) for out in ray.get(refs) for x in out]

        problems = eval_problems(self.cfg, self.eval_sets[split])
        with self.timer("evaluate"):
            res = cached_eval(self.model_path, self.cfg, split, problems) \
                if self.step == 0 else None
            if res is None:
                _, res = evaluate(problems, generate, topo.pool, n=settings.n,
                                  temperature=settings.temperature, split=split)
        folder = self.run_dir / "eval"
        folder.mkdir(exist_ok=True)
        (folder / f"{split}-step-{self.step:06d}.json").write_text(json.dumps(res.to_json()))
        value = res.headline()
        figures = res.figures()
        self.figures[split][self.step] = figures
        if split == "val":
            self.pass_at_1[self.step] = value
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
        self.log.step(self.step, row)
        for line in res.lines():
            self.log.print(f"[step {self.step}] {line}")
        return value

    def publish(self, topo) -> float:
        """The learner's current weights to every sampler as the next policy version (or,
        after a restore, as the version they already were); returns seconds spent."""
        import ray

        t0 = time.perf_counter()
        self.versions.publish(self.step)
        if self.cfg.weights.transport == "object_store":
            # Every rank takes part (ZeRO-3 gathers); rank 0 returns the full state. The
            # returned object is owned by this driver, not by the rank, so it outlives a
            # learner rank that dies later. Each rank also answers a small "done": a rank
            # that died mid-gather raises here instead of leaving the store a lost version.
            pairs = [a.full_state_and_done.options(num_returns=2).remote()
                     for a in topo.learner.actors]
            ray.get([done for _, done in pairs])
            refs = [pairs[0][0]]
            ray.get(topo.store.publish.remote(self.version, refs))
            self.versions.hold(refs)
        else:
            bucket = self.cfg.weights.bucket_mb
            sends = [a.broadcast_weights.remote(self.version, bucket) for a in topo.learner.actors]
            recvs = [s.receive_broadcast.remote(bucket) for s in topo.samplers]
            ray.get(sends + recvs)
            # rank 0 gave the store this version too: keep its reference (for `resend`)
            version, refs = ray.get(topo.store.latest.remote())
            if version == self.version:
                self.versions.hold(refs)
        ray.get(topo.buffer.set_policy_version.remote(self.version))
        return time.perf_counter() - t0

    def _reference_pairs(self, problem: Problem, tokenizer, enc_dec: bool) -> list:
        """The problem's reference solutions as (prompt ids, target ids), tokenized once, the
        prompt as the samplers tokenize it."""
        from learner.sft import sft_pairs

        pairs = self._sl_pairs.get(problem.task_id)
        if pairs is None:
            pairs = self._sl_pairs[problem.task_id] = sft_pairs([problem], tokenizer, enc_dec,
                                                                self.prompt_limit)
        return pairs

    def learner_batches(self, exps: list[Experience], tokenizer, enc_dec: bool) -> list[list]:
        """Each rank's micro-batches for one optimizer step. mix: each holds RL samples and
        as many reference solutions; alternate: supervised and RL micro-batches take turns
        (supervised first, as in the paper's code), each holding one kind."""
        from learner.batch import TrainBatch, collate

        lc = self.cfg.learner
        per_rank = lc.batch_size // lc.ranks
        pad = tokenizer.pad_token_id
        shards = []
        for r in range(lc.ranks):
            mine = exps[r * per_rank:(r + 1) * per_rank]
            micro = []
            for i in range(0, per_rank, lc.micro_batch_size):
                part = mine[i:i + lc.micro_batch_size]
                outcomes = ([e.outcome for e in part] if self.cfg.algo == "actor_critic"
                            and lc.critic == "outcome" else None)
                rl = collate([e.prompt_ids for e in part], [e.completion_ids for e in part],
                             [e.token_rewards for e in part],
                             [e.behaviour_logprobs for e in part], pad_id=pad,
                             encoder_decoder=enc_dec, outcomes=outcomes)
                sl = self._supervised_batch(len(part), tokenizer, enc_dec) \
                    if lc.sl_weight > 0 else None
                if lc.sl_mode == "alternate":
                    micro += [TrainBatch(rl=None, sl=sl), TrainBatch(rl=rl)]
                else:
                    micro.append(TrainBatch(rl=rl, sl=sl))
            shards.append(micro)
        return shards

    def _supervised_batch(self, n: int, tokenizer, enc_dec: bool):
        """Up to n (prompt, reference solution) pairs of random training problems."""
        from learner.batch import collate

        if not self.sl_problems:
            return None
        probs = self.rng.sample(self.sl_problems, min(len(self.sl_problems), n))
        pairs = [pair for p in probs
                 for pair in self._reference_pairs(p, tokenizer, enc_dec)][:n]
        return collate([a for a, _ in pairs], [b for _, b in pairs],
                       pad_id=tokenizer.pad_token_id, encoder_decoder=enc_dec)

    def run(self, topo, tokenizer, enc_dec: bool) -> dict:
        import ray
        from ray.exceptions import RayActorError

        from cluster.metrics import metrics

        from learner.models import load_config, model_prompt_limit

        cfg, lc = self.cfg, self.cfg.learner
        self.prompt_limit = model_prompt_limit(cfg.sampler.max_prompt_tokens,
                                               load_config(self.model_path), tokenizer,
                                               cfg.sampler.max_new_tokens)
        rcfg = cfg.reward
        objective = make_objective(cfg, self.model_path)
        settings = self.sampler_settings()
        t_start = time.time()
        if 0 not in self.figures["test"]:
            if cfg.train.eval_val:
                evaluate_safely(self, topo, "val")
            evaluate_safely(self, topo, "test")
        gen: dict = {}  # ref -> sampler index
        groups: dict[str, Group] = {}
        sample_group: dict[str, str] = {}
        learner_refs: list | None = None
        learner_t0 = 0.0
        m = metrics()
        last_log = last_control = time.time()
        deadline = (t_start + cfg.train.max_minutes * 60) if cfg.train.max_minutes else None
        while self.step < cfg.train.max_steps:
            if self.stop_reason:
                break
            if time.time() - last_control >= 1.0:
                last_control = time.time()
                with self.timer("control"):
                    self.control(topo)
            if deadline and time.time() > deadline:
                self.stop_reason = "time limit"
                break
            with self.timer("generate"):
                busy = set(gen.values())
                for i, sampler in enumerate(topo.samplers):
                    if i in busy or topo.pool.backlog() >= cfg.train.max_queue:
                        continue
                    probs = self.next_problems(cfg.sampler.prompts_per_batch)
                    gen[sampler.generate.remote(probs, settings)] = i
            waits = list(gen) + (learner_refs or [])
            ready, _ = ray.wait(waits, num_returns=1, timeout=0.05) if waits else ([], [])
            with self.timer("judge"):
                for ref in [r for r in ready if r in gen]:
                    idx = gen.pop(ref)
                    try:
                        samples = ray.get(ref)
                    except RayActorError:
                        self.replace_sampler(topo, idx)
                        continue
                    self.samples_generated += len(samples)
                    m.inc("samples_generated", len(samples), sampler=str(idx))
                    for s in samples:
                        gkey = s.group_id
                        g = groups.setdefault(gkey, Group(self.train_by_id[s.task_id]))
                        g.samples.append(s)
                        sample_group[s.sample_id] = gkey
                        topo.pool.submit(s.sample_id, g.problem,
                                         Solution(task_id=s.task_id, completion=s.program,
                                                  sample_id=s.sample_id))
                        self.programs_submitted += 1
                        self.outstanding.add(s.sample_id)
                done_exps = []
                for sid, result in topo.pool.poll(0.0):
                    if sid not in self.outstanding:  # never submitted, or answered already
                        self.results_unexpected += 1
                        continue
                    self.outstanding.discard(sid)
                    self.programs_judged += 1
                    self.outcomes[result.outcome] += 1
                    self.window[result.outcome] += 1
                    m.inc("programs_executed", outcome=result.outcome)
                    m.observe("test_latency_s", result.duration_s)
                    gkey = sample_group.pop(sid, None)
                    if gkey is None:  # submitted before a restart: its group is gone
                        continue
                    g = groups[gkey]
                    g.results[sid] = result
                    self.slice_window[(g.problem.metadata.get("teacher", "all"),
                                       result.outcome == "pass")] += 1
                    if len(g.results) == len(g.samples):
                        exps, _ = experiences_from_group(g, rcfg)
                        done_exps += exps
                        self.rewards_window += [e.reward for e in exps]
                        del groups[gkey]
                if done_exps:
                    ray.get(topo.buffer.add.remote(done_exps))
                m.set("executor_queue_depth", topo.pool.queue_depth())
                m.set("executor_busy_workers", topo.pool.busy_workers())
                m.set("executor_pool_size", topo.pool.size)
            with self.timer("learn"):
                done = ray.wait(learner_refs, num_returns=len(learner_refs), timeout=0)[0] \
                    if learner_refs is not None else []
                for ref in done:
                    ray.get(ref)  # a dead rank raises here (train_cmd restarts the run)
                if learner_refs is not None and len(done) == len(learner_refs):
                    self._finish_step(topo, ray.get(learner_refs), learner_t0, t_start)
                    learner_refs = None
                    continue
                if learner_refs is None:
                    size = ray.get(topo.buffer.__len__.remote())
                    if size >= cfg.buffer.min_fill:  # at least a batch (core/checks.py)
                        batch = ray.get(topo.buffer.sample.remote(lc.batch_size, 0.0))
                        if len(batch) == lc.batch_size:
                            shards = self.learner_batches(batch, tokenizer, enc_dec)
                            learner_t0 = time.perf_counter()
                            learner_refs = [a.train_step.remote(sh, objective) for a, sh in
                                            zip(topo.learner.actors, shards)]
            if time.time() - last_log > 30:
                last_log = time.time()
                self.log.print(f"[step {self.step}] generated {self.samples_generated}, "
                               f"judged {self.programs_judged}, backlog {topo.pool.backlog()}")
        if learner_refs is not None:  # a running step finishes and counts: the learner took it
            self._finish_step(topo, ray.get(learner_refs), learner_t0, t_start, stopping=True)
        for ref in list(gen):
            try:
                ray.get(ref)
            except RayActorError:
                pass
        wall = time.time() - t_start
        stopped_by_signal = bool(self.stop_reason and self.stop_reason.startswith("signal"))
        if self.step > 0 and self.step not in self.figures["test"] and not stopped_by_signal:
            if self.versions.published_step != self.step:
                self.publish(topo)
            if self.step not in self.pass_at_1 and cfg.train.eval_val:
                evaluate_safely(self, topo, "val")
            evaluate_safely(self, topo, "test")
        return {"wall_s": wall}

    def _finish_step(self, topo, metrics_list, learner_t0: float, t_start: float,
                     stopping: bool = False) -> None:
        self.step += 1
        step_s = time.perf_counter() - learner_t0
        self.learner_busy_s += step_s
        self.after_step(topo, metrics_list, step_s, t_start, stopping=stopping)

    def after_step(self, topo, metrics_list, step_s: float, t_start: float,
                   stopping: bool = False) -> None:
        import ray

        from cluster.metrics import metrics

        m = metrics()
        cfg = self.cfg
        sync_s = None
        if self.versions.due(self.step):
            with self.timer("sync"):
                sync_s = self.publish(topo)
            m.set("weight_sync_time_s", sync_s)
            m.set("policy_version", self.version)
        stats = ray.get(topo.buffer.stats.remote())
        self.buffer_size_seen = stats.size
        for reason in ("stale", "full"):
            total = getattr(stats, f"dropped_{reason}")
            m.inc("buffer_dropped", self.dropped_seen.delta(reason, total), reason=reason)
        total = sum(self.window.values()) or 1
        rewards = self.rewards_window or [0.0]
        wall = time.time() - t_start
        row = {
            "loss/total": sum(x.loss for x in metrics_list) / len(metrics_list),
            "learner/grad_norm": metrics_list[0].grad_norm, "learner/lr": metrics_list[0].lr,
            "learner/step_s": step_s, "learner/busy_fraction": self.learner_busy_s / max(wall, 1e-9),
            "reward/mean": sum(rewards) / len(rewards),
            "buffer/size": stats.size, "buffer/mean_age": stats.mean_age,
            "buffer/dropped_stale": stats.dropped_stale, "buffer/dropped_full": stats.dropped_full,
            "throughput/samples_per_s": self.samples_generated / max(wall, 1e-9),
            "throughput/programs_per_s": self.programs_judged / max(wall, 1e-9),
            "policy/version": self.version,
        }
        for k, v in metrics_list[0].extra.items():
            row[k if "/" in k else f"learner/{k}"] = v
        for o in OUTCOMES:
            row[f"outcome/{o}"] = self.window.get(o, 0) / total
        for sl in sorted({k for k, _ in self.slice_window}):  # training pass rate per slice
            n = self.slice_window[(sl, True)] + self.slice_window[(sl, False)]
            row[f"train_pass/{sl}"] = self.slice_window[(sl, True)] / n
        if sync_s is not None:
            row["sync/seconds"] = sync_s
        self.log.step(self.step, row)
        m.inc("learner_steps")
        m.set("learner_step_time_s", step_s)
        m.set("learner_loss", row["loss/total"])
        m.set("reward_mean", row["reward/mean"])
        m.set("pass_rate", row["outcome/pass"])
        m.set("buffer_size", stats.size)
        m.set("buffer_mean_age", stats.mean_age)
        m.set("learner_busy_fraction", row["learner/busy_fraction"])
        self.log.print(f"[step {self.step}/{cfg.train.max_steps}] loss {row['loss/total']:.4f} "
                       f"reward {row['reward/mean']:+.3f} pass {row['outcome/pass'] * 100:.0f}% "
                       f"buffer {stats.size} age {stats.mean_age:.2f} "
                       f"({step_s:.1f}s/step)")
        self.window.clear()
        self.slice_window.clear()
        self.rewards_window = []
        if (self.step % cfg.train.eval_every == 0 and self.step < cfg.train.max_steps
                and not stopping and cfg.train.eval_val):
            evaluate_safely(self, topo, "val")
        if self.step % cfg.learner.checkpoint_every == 0:
            self.checkpoint(topo)

    def control(self, topo) -> None:
        """Apply a pending `rltf scale` request, else the autoscaling policy; report status."""
        import ray

        from cluster.controller import autoscale

        check_bookkeeping(self, topo)
        check_learner(topo)
        ex, pool = self.cfg.executor, topo.pool
        now = time.time()
        if now - self.last_wait_check >= 30:
            self.last_wait_check = now
            report_waiting_executors(self)
        want, why = pool.size, ""
        req = ray.get(topo.controller.take_request.remote()) if topo.controller else None
        if req is not None:
            self.applied_request, want = req
            why = "rltf scale"
        elif ex.autoscale:
            want = autoscale(ex, pool.size, pool.queue_depth(), pool.busy_workers(),
                             now - self.last_resize)
            why = f"autoscaling (queue {pool.queue_depth()}, busy {pool.busy_workers()})"
        if want > pool.size:  # only as many as the cluster (and its autoscaler) can hold
            want = feasible_pool_size(self, want, pool.size, req)
        if want != pool.size:
            old = pool.size
            pool.resize(want)
            self.last_resize = now
            self.log.print(f"[step {self.step}] executor pool {old} -> {pool.size} actors ({why})")
        if topo.controller is not None:
            topo.controller.report.remote({
                "step": self.step, "policy_version": self.version,
                "executor_pool_size": pool.size, "executor_queue_depth": pool.queue_depth(),
                "executor_busy_workers": pool.busy_workers(),
                "applied_request": self.applied_request, "samplers": len(topo.samplers),
                "refused_request": self.refused_request,
                "programs_judged": self.programs_judged, "time": now})

    def replace_sampler(self, topo, idx: int) -> None:
        from cluster.topology import new_sampler

        if not is_dead(topo.samplers[idx]):  # replaced already (a second call that failed)
            return
        self.sampler_restarts += 1
        self.log.print(f"sampler {idx} died; starting a replacement (it fetches version "
                       f"{self.version})")
        # Ray keeps a dead actor's name taken while a handle to it lives: drop ours first
        topo.samplers[idx] = None
        topo.samplers[idx] = new_sampler(self.cfg, self.model_path, idx)
        if self.cfg.weights.transport == "collective":
            # the broadcast group's size is fixed when it is formed: form it again with the
            # replacement (which has fetched the latest version from the weight store)
            from cluster.topology import collective_backend, connect_collective

            connect_collective(topo.learner, topo.samplers, collective_backend(self.cfg))

    def checkpoint(self, topo) -> Path:
        import ray

        from cluster import checkpoints

        with self.timer("checkpoint"):
            # written aside and sealed at the end: a crash never leaves a loadable half
            folder = checkpoints.begin(self.run_dir, self.step)
            topo.learner.save_checkpoint(str(folder))
            buf = ray.get(topo.buffer.state_dict.remote())
            import torch

            torch.save(buf, folder / "buffer.pt")
            (folder / "driver_state.json").write_text(json.dumps(self.state()))
            if self.versions.saved_with_checkpoint(self.step) and self.versions.held:
                # the samplers' weights (an earlier step's), for a restore to send them again
                torch.save(dict(ray.get(self.versions.held[0])), folder / checkpoints.PUBLISHED)
            folder = checkpoints.commit(folder)
        self.last_checkpoint_step = self.step
        self.log.print(f"checkpoint saved: {folder}")
        return folder
