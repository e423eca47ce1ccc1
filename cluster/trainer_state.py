"""The training run's state, apart from the loop that drives it (`cluster/driver.py`): the
settings, the order training problems are handed out in, the policy versions, the counters
that account for every sample and program, and their checkpointed form (`driver_state.json`).
Plain Python, tested without Ray."""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path

from actors.samples import ProblemDraw
from cluster.policy_versions import PolicyVersions
from cluster.step_report import PhaseClock
from core.records import Problem


class TrainerState:
    """The training run's state: settings, the problem order, the policy versions, the
    counters every guarantee is checked against, and their checkpointed form."""

    def __init__(self, cfg, run_dir: Path, model_path: str, problems: dict[str, list[Problem]],
                 log, resume_from: Path | None = None):
        self.cfg, self.run_dir, self.model_path = cfg, Path(run_dir), model_path
        self.train_problems = problems["train"]
        self.train_by_id = {p.task_id: p for p in self.train_problems}
        self.prompt_limit: int | None = None  # prompt tokens, the same for samplers and SL
        # the validation split serves choices of settings (every E steps); the test split is
        # evaluated before and after and only reported. Without one, the other serves.
        self.eval_sets = {"val": problems.get("val") or problems["test"],
                          "test": problems["test"] or problems.get("val", [])}
        self.log = log
        self.resume_from = resume_from
        # where the next sampler call draws from (`actors/samples.py:ProblemDraw`): position
        # `cursor` of epoch `epoch`'s order of the training problems
        self.epoch = self.cursor = 0
        self.step = 0
        self.versions = PolicyVersions(cfg.weights.sync_every)
        if cfg.learner.sl_mode == "alternate" and not any(p.solutions
                                                          for p in self.train_problems):
            raise ValueError("learner.sl_mode=alternate needs training problems with reference "
                             "solutions for its supervised micro-batches, and these have none; "
                             "set learner.sl_mode=mix or learner.sl_weight=0")
        self.stop_reason: str | None = None
        self.timer = PhaseClock()
        self.outcomes: collections.Counter = collections.Counter()
        self.window: collections.Counter = collections.Counter()
        self.slice_window: collections.Counter = collections.Counter()  # (slice, passed)
        self.reward_window = [0.0, 0]  # the sum and count of the experiences' rewards
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
        self.outstanding: dict[str, int] = {}  # parcel id -> its programs, until answered
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
    def next_draw(self, k: int) -> ProblemDraw:
        """The next `k` training problems for a sampler call, in the run's order (each
        problem once per epoch, a new order each epoch): the sampler resolves the draw."""
        draw = ProblemDraw(self.epoch, self.cursor, k)
        n = len(self.train_problems)
        self.cursor += k
        while self.cursor >= n:
            self.cursor -= n
            self.epoch += 1
        return draw

    def room_to_generate(self, calls: int, backlog: int, buffered: int,
                         learning: bool) -> bool:
        """Whether a sampler may start a call: while fewer than `train.max_queue` samples
        wait for the learner (`calls` sampler calls in flight, `backlog` programs in the
        executor pool, `buffered` experiences in the buffer as last seen), so that the
        samplers do not outrun the learner and the samples it trains on stay recent. With
        nothing in flight and the learner idle, always (the buffer may hold fewer than last
        seen: stale samples dropped, or its process restarted empty)."""
        s = self.cfg.sampler
        in_flight = calls * s.prompts_per_batch * (s.samples_per_prompt + s.include_greedy) \
            + backlog
        if in_flight == 0 and not learning:
            return True
        return in_flight + buffered < self.cfg.train.max_queue

    # -- accounting: every program submitted gets exactly one verdict --------------------------
    def account_submitted(self, parcel_id: str, programs: int) -> None:
        """A parcel's programs handed to the executors."""
        self.programs_submitted += programs
        self.outstanding[parcel_id] = programs

    def account_parcel(self, summary) -> int:
        """A parcel's summary from the executor that judged it. A parcel still outstanding
        counts once: its programs as judged (their outcomes in the totals and the step's
        windows), or as abandoned when it was lost with its sampler; one answered again
        counts as unexpected. Returns the programs judged now."""
        programs = self.outstanding.pop(summary.parcel_id, None)
        if programs is None:
            self.results_unexpected += summary.samples
            return 0
        if summary.lost is not None:
            self.programs_abandoned += programs
            return 0
        if summary.samples != programs:
            raise ValueError(f"parcel {summary.parcel_id}: {summary.samples} programs judged, "
                             f"but {programs} were submitted")
        self.programs_judged += programs
        self.outcomes.update(summary.outcomes)
        self.window.update(summary.outcomes)
        self.slice_window.update(summary.slices)
        self.reward_window[0] += summary.reward_sum
        self.reward_window[1] += summary.rewards
        return programs

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
                "epoch": self.epoch,
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
        # a checkpoint from before draws were (epoch, cursor) restarts the order's epochs
        self.epoch = st.get("epoch", 0)
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
