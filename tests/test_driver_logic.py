"""The driver's decisions, in-process without Ray: policy versions count publishes (so the
buffer keeps its samples across publishes under sync_every > 1), the versions survive a
checkpoint and a weight-store restart, the greedy row is a baseline only, EOS ends an RL sample, and sl_mode=alternate
lays supervised and RL micro-batches out in turns."""

from __future__ import annotations

import json

import pytest

from actors.replay_buffer import Experience, ReplayBuffer
from actors.sampler import Sample
from core.config import BufferConfig
from core.config_reading import build_config
from actors.experience import Group, experiences_from_group
from cluster.driver import Trainer, batch_settings, micro_batches_per_step
from cluster.policy_versions import PolicyVersions
from cluster.step_report import PhaseClock, StepReport
from core.records import Problem, Result

PER_STEP = 64  # samples judged between two learner steps


def _exp(i: int, version: int) -> Experience:
    return Experience(task_id="t", sample_id=f"s{i}", prompt_ids=[1], completion_ids=[2],
                      token_rewards=[0.5], behaviour_logprobs=[-0.1], outcome="pass",
                      reward=1.0, policy_version=version)


def _fill(steps: int, version_of_publish) -> tuple[ReplayBuffer, list[tuple[int, int]]]:
    """The paper preset's buffer (6400, max_staleness 4, uniform draws) over `steps` learner
    steps with sync_every=10: before each step PER_STEP new samples arrive, made by the
    weights the samplers hold; every 10th step publishes (`version_of_publish(clock, step)`).
    Returns the buffer and (size before, size after) at each publish."""
    buf = ReplayBuffer(BufferConfig(capacity=6400, max_staleness=4, mode="uniform"), seed=0)
    clock = PolicyVersions(sync_every=10)
    held, n, sizes = 0, 0, []
    for step in range(1, steps + 1):
        buf.add(_exp(n + i, held) for i in range(PER_STEP))
        n += PER_STEP
        assert len(buf.sample(32)) == 32  # the learner step (uniform: nothing removed)
        if clock.due(step):
            before = len(buf)
            held = version_of_publish(clock, step)
            buf.set_policy_version(held)
            sizes.append((before, len(buf)))
    return buf, sizes


def test_the_buffer_keeps_its_samples_across_publishes_with_sync_every_10():
    buf, sizes = _fill(100, lambda clock, step: clock.publish(step))
    # Publishes 1-4 (steps 10-40, versions 1-4) drop nothing: the buffer grows by 640 a time.
    assert sizes[:4] == [(640, 640), (1280, 1280), (1920, 1920), (2560, 2560)]
    # Version 5 makes the samples of version 0 (steps 1-10: 640) five versions old: dropped.
    assert sizes[4] == (3200, 2560)
    # At step 100 (version 10) the buffer holds versions 6-9 (steps 61-100); versions 0-5
    # (steps 1-60, 60 x 64 = 3840 samples) were dropped as stale, and nothing else.
    st = buf.stats()
    assert (st.policy_version, st.size, st.dropped_stale) == (10, 40 * PER_STEP, 60 * PER_STEP)
    assert {e.policy_version for e in buf.sample(6400)} == {6, 7, 8, 9}
    assert st.mean_age == pytest.approx(2.5)  # ages 4, 3, 2, 1 in equal shares


def test_versions_numbered_by_learner_step_would_empty_the_buffer_at_every_publish():
    # What the version = learner step numbering did: each publish jumps 10 versions, past
    # max_staleness 4, so every sample held becomes stale at once.
    def by_step(clock, step):
        clock.publish(step)
        return step

    _, sizes = _fill(30, by_step)
    assert sizes == [(640, 0), (640, 0), (640, 0)]


def _trainer(tmp_path, overrides=(), problems=None):
    cfg = build_config({}, list(overrides))
    probs = problems or [_problem(i) for i in range(6)]
    return Trainer(cfg, tmp_path, "unused", {"train": probs, "val": [], "test": []}, log=None)


def _problem(i: int, solutions: bool = True) -> Problem:
    return Problem(task_id=f"p{i}", prompt=f"Return {i} plus x.", format="call", fn_name="f",
                   tests=[{"input": [1], "output": i + 1}],
                   solutions=[f"def f(x):\n    return x + {i}\n"] if solutions else [])


def test_policy_versions_survive_a_checkpoint_and_a_restore(tmp_path):
    t = _trainer(tmp_path, ["weights.sync_every=10"])
    assert not t.versions.due(5) and t.versions.due(10)
    t.step = 10
    assert t.versions.publish(10) == 1 and not t.versions.due(10)
    t.step = 15  # a checkpoint between publishes: the samplers hold step 10's weights
    state = json.loads(json.dumps(t.state()))
    assert (state["version"], state["published_step"]) == (1, 10)
    again = _trainer(tmp_path, ["weights.sync_every=10"])
    again.load_state(state)
    assert (again.version, again.step) == (1, 15)
    # the samplers' weights (step 10's) are saved with the checkpoint and sent again as
    # version 1; the learner's (step 15's) wait for the publish at step 20
    assert t.versions.saved_with_checkpoint(15)
    assert again.versions.after_restore(again.step, ["w10"]) == "saved"
    assert again.versions.resend() == (1, ["w10"]) and again.versions.due(20)
    # a checkpoint right after a publish is restored as the version it was
    t.step = 20
    t.versions.publish(20)
    assert not t.versions.saved_with_checkpoint(20)
    other = _trainer(tmp_path, ["weights.sync_every=10"])
    other.load_state(json.loads(json.dumps(t.state())))
    assert other.versions.after_restore(other.step) == "republish"
    assert other.versions.publish(other.step) == 2 == t.version
    # before the first publish the samplers' starting weights are version 0: nothing to send
    first = _trainer(tmp_path, ["weights.sync_every=10"])
    first.step = 7
    assert not first.versions.saved_with_checkpoint(7)
    assert first.versions.after_restore(7) == "none"


def _restored_run(tmp_path, steps: int, checkpoint_at: int, crash_after: int,
                  old_behaviour: bool = False):
    """A run of `steps` learner steps with sync_every=3 whose driver saves its state (and
    what `saved_with_checkpoint` asks for) at step `checkpoint_at`, dies after step
    `crash_after` and is restored from it into fresh samplers and a fresh weight store (as
    cluster/checkpoints.py's restore does; `old_behaviour`: the learner's weights published
    as the next version, as it did before). The learner's weights after step s are "w<s>".
    Returns the publishes (step, version) and, per step, what a sampler could fetch then
    (the redone steps' values replace the first ones)."""
    from cluster.weights import WeightStore

    t, store = _trainer(tmp_path, ["weights.sync_every=3"]), WeightStore()
    publishes, fetchable, saved = [], {}, None

    def publish():
        version = t.versions.publish(t.step)
        store.publish(version, [f"w{t.step}"])
        t.versions.hold([f"w{t.step}"])
        publishes.append((t.step, version))

    while t.step < steps:
        t.step += 1
        if t.versions.due(t.step):
            publish()
        if t.step == checkpoint_at:
            state = json.loads(json.dumps(t.state()))
            if t.versions.saved_with_checkpoint(t.step):
                saved = t.versions.held
        fetchable[t.step] = store.latest()
        if t.step == crash_after:
            crash_after = -1
            t, store = _trainer(tmp_path, ["weights.sync_every=3"]), WeightStore()
            t.load_state(state)
            plan = "next" if old_behaviour else t.versions.after_restore(t.step, saved)
            if plan == "saved":
                store.publish(t.version, saved)
            elif plan != "none":
                publish()
    return publishes, fetchable


def test_a_restore_between_publishes_keeps_the_publish_schedule(tmp_path):
    plain, fetch_plain = _restored_run(tmp_path, 12, checkpoint_at=0, crash_after=0)
    assert plain == [(3, 1), (6, 2), (9, 3), (12, 4)]
    # checkpoint at step 4 (the samplers hold step 3's weights, version 1), crash after
    # step 5: step 3's weights, saved with the checkpoint, go out again as version 1; steps
    # 5-12 are redone and publish at 6, 9, 12 as versions 2, 3, 4, and a sampler fetches
    # at every step exactly what it fetched in the run never interrupted
    again, fetch_again = _restored_run(tmp_path, 12, checkpoint_at=4, crash_after=5)
    assert again == [(3, 1), (6, 2), (9, 3), (12, 4)]
    assert fetch_again == fetch_plain
    # a checkpoint before the first publish (step 2): the fresh samplers' starting weights
    # are version 0 already; nothing is sent, and the redone step 3 publishes version 1
    again, fetch_again = _restored_run(tmp_path, 12, checkpoint_at=2, crash_after=4)
    assert again == [(3, 1), (3, 1), (6, 2), (9, 3), (12, 4)] and fetch_again == fetch_plain
    # at a publish (step 6): the learner's weights are version 2's, sent again as version 2
    again, fetch_again = _restored_run(tmp_path, 12, checkpoint_at=6, crash_after=7)
    assert again == [(3, 1), (6, 2), (6, 2), (9, 3), (12, 4)] and fetch_again == fetch_plain
    # What the restore did before: step 4's weights became version 2 and every later
    # publish moved one version up
    shifted, _ = _restored_run(tmp_path, 12, checkpoint_at=4, crash_after=5,
                               old_behaviour=True)
    assert shifted == [(3, 1), (4, 2), (6, 3), (9, 4), (12, 5)]


def test_an_actor_killed_during_a_restart_starts_the_next_one():
    from ray.exceptions import RayActorError

    from cluster.recovery import RestartsExhausted, restart_until_built

    calls = []

    def rebuild(n, why):  # the second restart's rebuild is the first that is not cut short
        calls.append((n, why))
        if n < 2:
            raise RayActorError()
        return f"topology {n}"

    assert restart_until_built(rebuild, 0, 2, "rank died") == ("topology 2", 2)
    assert calls[0] == (1, "rank died") and calls[1][0] == 2
    assert calls[1][1].startswith("RayActorError") and "during restart 1" in calls[1][1]
    # every restart cut short: gives up after train.restarts, saying why each was needed
    calls.clear()
    with pytest.raises(RestartsExhausted, match=r"gave up after 3 restart\(s\) "
                       r"\(train.restarts=3\): rank died; then RayActorError.*during restart "
                       r"1; then .*during restart 2; then .*during restart 3\. .*raise "
                       r"train.restarts"):
        restart_until_built(lambda n, why: rebuild(-n, why), 0, 3, "rank died")
    assert [n for n, _ in calls] == [-1, -2, -3]
    # restarts used up earlier in the run: none is tried
    with pytest.raises(RestartsExhausted, match=r"after 2 restart\(s\) .*: rank died\."):
        restart_until_built(rebuild, 2, 2, "rank died")


def _publishes(steps: int, sync_every: int, store_restart_after: tuple[int, ...] = (),
               old_behaviour: bool = False):
    """The driver's publishes over `steps` learner steps: (step, version) of each, and every
    (version, weights) a sampler could fetch from the weight store after each step. The
    learner's weights after step s are "w<s>". After the steps in `store_restart_after` Ray
    restarts the store empty and the driver gives it what `PolicyVersions.resend` says (or,
    `old_behaviour`, publishes the current weights as it used to)."""
    from cluster.weights import WeightStore

    clock, store = PolicyVersions(sync_every), WeightStore()
    publishes, fetchable = [], []

    def publish(step):
        version = clock.publish(step)
        store.publish(version, [f"w{step}"])
        clock.hold([f"w{step}"])
        publishes.append((step, version))

    for step in range(1, steps + 1):
        if clock.due(step):
            publish(step)
        if step in store_restart_after:
            store = WeightStore()
            if old_behaviour:
                publish(step)
            elif (again := clock.resend()) is not None:
                store.publish(*again)
        fetchable.append(store.latest())
    return publishes, fetchable


def test_a_weight_store_restart_leaves_the_publish_schedule_and_versions_as_they_were():
    # sync_every=3 over 12 steps: versions 1-4 published after steps 3, 6, 9, 12.
    plain, fetch_plain = _publishes(12, 3)
    assert plain == [(3, 1), (6, 2), (9, 3), (12, 4)]
    # Ray restarts the store after steps 4 and 8 (between publishes): the driver gives it
    # version 1 (step 3's weights) and version 2 (step 6's) again, the very same weights, so
    # every publish keeps its step and number and a sampler fetches what it fetched before.
    again, fetch_again = _publishes(12, 3, store_restart_after=(4, 8))
    assert again == plain and fetch_again == fetch_plain
    by_version = dict((v, f"w{s}") for s, v in plain)
    for version, weights in fetch_again[2:]:  # truthful: version v is step 3v's weights
        assert weights == [by_version[version]]
    # A restart right after a publish (step 6) re-sends that version: nothing changes either.
    assert _publishes(12, 3, store_restart_after=(6,)) == (plain, fetch_plain)
    # What the driver did before: the learner's current weights (step 4's) became version 2,
    # and every later publish moved one version up.
    shifted, _ = _publishes(12, 3, store_restart_after=(4,), old_behaviour=True)
    assert shifted == [(3, 1), (4, 2), (6, 3), (9, 4), (12, 5)]


def test_a_restart_with_no_weights_held_sends_nothing():
    clock = PolicyVersions(3, version=2, published_step=6)  # restored, not yet published
    assert clock.resend() is None
    clock.publish(6)  # the restore's publish of the same weights: version 2 again
    clock.hold(["w6"])
    assert clock.resend() == (2, ["w6"])
    clock.publish(9)  # a new version forgets the old weights until they are held
    assert clock.version == 3 and clock.resend() is None


def _sample(k: int, completion: str, offsets, greedy=False, eos: int | None = None) -> Sample:
    return Sample(task_id="p0", sample_id=f"p0/v3/s-0-{k}", group_id="p0/v3/s-0",
                  is_greedy=greedy, prompt="P",
                  program_prefix="", completion=completion, program=completion,
                  prompt_token_ids=[7, 8], token_ids=list(range(10, 10 + len(offsets))),
                  token_offsets=offsets, logprobs=[-0.5] * len(offsets), policy_version=3,
                  finish_reason="eos" if eos is not None else "length", eos_token_id=eos,
                  eos_logprob=-0.25 if eos is not None else None)


def _result(k: int, outcome: str, **kw) -> Result:
    return Result(task_id="p0", sample_id=f"p0/v3/s-0-{k}", outcome=outcome,
                  passed=kw.pop("passed", 0), total=2, **kw)


def test_greedy_row_is_the_baseline_only_and_eos_ends_an_rl_sample():
    program = "x = 1\ny = z\n"  # NameError on line 2
    offsets = [(0, 6), (6, 12)]  # one token per line
    greedy = _sample(0, "def f(x):\n", [(0, 10)], greedy=True, eos=0)
    a = _sample(1, program, offsets, eos=0)  # ended on EOS (id 0)
    b = _sample(2, program, offsets)  # cut by max_new_tokens: no EOS
    c = _sample(3, "def f(x):\n    return (x", [(0, 10), (10, 23)], eos=0)  # stopped mid-line
    g = Group(_problem(0), [greedy, a, b, c],
              {greedy.sample_id: _result(0, "fail", passed=1),
               a.sample_id: _result(1, "runtime_error", error_type="NameError", error_line=2),
               b.sample_id: _result(2, "runtime_error", error_type="NameError", error_line=2),
               c.sample_id: _result(3, "syntax_error", error_type="SyntaxError", error_line=2)})
    exps, _ = experiences_from_group(g, build_config().reward)
    # the greedy sample is not trained on; it is the baseline b = -0.3 + 1.3 / 2 = 0.35
    assert [e.sample_id for e in exps] == [a.sample_id, b.sample_id, c.sample_id]
    ea, eb, ec = exps
    # a: R = -0.6, R - b = -0.95; line 2 (its second token) gets the 0.3 penalty; the EOS
    # token (empty span at the end) is on no line: -0.95
    assert ea.completion_ids == [10, 11, 0] and ea.behaviour_logprobs == [-0.5, -0.5, -0.25]
    assert ea.token_rewards == pytest.approx([-0.95, -1.25, -0.95])
    assert eb.completion_ids == [10, 11] and eb.token_rewards == pytest.approx([-0.95, -1.25])
    # c: a syntax error on its last line is a whole-program error (it stopped too early):
    # R = -1, R - b = -1.35, and every token, EOS included, gets the penalty: -1.65
    assert ec.completion_ids == [10, 11, 0]
    assert ec.token_rewards == pytest.approx([-1.65] * 3)


def _rank_batches(t, exps, tok):
    """Each rank's micro-batches, as the ranks collate their shares of a batch."""
    from learner.step_batches import StepBatches

    settings = batch_settings(t.cfg)
    batches = StepBatches(settings, tok, False, t.train_problems, seed=0)
    per = settings.per_rank
    return [batches.micro_batches(exps[r * per:(r + 1) * per]) for r in range(settings.learner.ranks)]


def test_alternate_interleaves_supervised_and_rl_micro_batches(tmp_path):
    from cluster.train_cmd import engine_settings
    from tiny_models import make_tokenizer

    tok = make_tokenizer(tmp_path / "tok")
    exps = [_exp(i, 0) for i in range(8)]
    base = ["learner.batch_size=8", "learner.micro_batch_size=4", "learner.sl_weight=0.5"]
    t = _trainer(tmp_path, base + ["learner.sl_mode=alternate"])
    [micro] = _rank_batches(t, exps, tok)
    # supervised first, then RL, twice: 4 micro-batches, each with one kind
    assert [(m.rl is not None, m.sl is not None) for m in micro] == [(False, True),
                                                                      (True, False)] * 2
    assert [m.sl.num_samples if m.sl else m.rl.num_samples for m in micro] == [4] * 4
    assert sum(m.rl.num_samples for m in micro[1::2]) == len(exps)  # no RL sample dropped
    assert len(micro) == micro_batches_per_step(t.cfg) == engine_settings(t.cfg, "x").grad_accum
    mix = _trainer(tmp_path, base)
    [micro] = _rank_batches(mix, exps, tok)
    assert [(m.rl is not None, m.sl is not None) for m in micro] == [(True, True)] * 2
    assert len(micro) == micro_batches_per_step(mix.cfg) == 2
    # alternate needs reference solutions for its supervised micro-batches
    with pytest.raises(ValueError, match="reference solutions"):
        _trainer(tmp_path, base + ["learner.sl_mode=alternate"],
                 [_problem(i, solutions=False) for i in range(3)])


def test_phases_are_flat_and_each_step_reports_its_own_seconds():
    now = [0.0]
    clock = PhaseClock(now=lambda: now[0])
    with clock("judge"):
        now[0] += 2.0
    with clock("learn"):
        now[0] += 0.5
        # a phase inside another would count its seconds twice: refused
        with pytest.raises(RuntimeError, match="inside phase 'learn'"):
            with clock("evaluate"):
                pass
    assert clock.take() == {"judge": 2.0, "learn": 0.5}
    with clock("judge"):
        now[0] += 1.0
    assert clock.take() == {"judge": 1.0}  # since the last take only
    assert clock.totals == {"judge": 3.0, "learn": 0.5}


def test_step_report_row_sums_outcomes_to_one_and_names_every_figure():
    from actors.replay_buffer import BufferStats
    from core.records import OUTCOMES

    stats = BufferStats(size=40, capacity=512, policy_version=3, added=90, consumed=50,
                        dropped_full=0, dropped_stale=4, mean_age=0.5)
    r = StepReport(step=7, losses=[1.0, 3.0], grad_norm=0.4, lr=1e-4, extra={"sl_loss": 0.2},
                   step_s=2.0, learner_busy_s=10.0, wall_s=20.0, samples_generated=400,
                   programs_judged=380, buffer=stats, policy_version=3,
                   outcomes={"pass": 3, "timeout": 1}, rewards=(0.5, 2),
                   slices={("all", True): 3, ("all", False): 1}, phases={"judge": 1.5})
    row = r.row()
    assert row["loss/total"] == 2.0 and row["reward/mean"] == 0.25  # means over ranks, rows
    assert row["learner/busy_fraction"] == 0.5 and row["throughput/samples_per_s"] == 20.0
    assert sum(row[f"outcome/{o}"] for o in OUTCOMES) == 1.0  # every outcome has a column
    assert (row["outcome/pass"], row["train_pass/all"]) == (0.75, 0.75)
    assert row["learner/sl_loss"] == 0.2 and row["phase_s/judge"] == 1.5
    assert "sync/seconds" not in row  # no publish this step
    assert r.line(120) == ("[step 7/120] loss 2.0000 reward +0.250 pass 75% buffer 40 "
                           "age 0.50 (2.0s/step)")
    # a step after which nothing new was judged: no outcome or reward columns, not zeros
    from dataclasses import replace

    quiet = replace(r, outcomes={}, rewards=(0.0, 0), slices={})
    assert not [k for k in quiet.row() if k.startswith(("outcome/", "reward/", "train_pass/"))]
    assert quiet.line(120) == ("[step 7/120] loss 2.0000 reward - pass - buffer 40 "
                               "age 0.50 (2.0s/step)")


@pytest.mark.parametrize("algo, extra", [("rltf", {}),
                                         ("actor_critic", {"reward": {"baseline": "none"}})])
def test_the_objective_takes_the_learner_section_as_is(algo, extra):
    from cluster.driver import make_objective

    cfg = build_config({"algo": algo, "learner": {"sl_weight": 0.25, "clip_eps": 0.1},
                        **extra})
    obj = make_objective(cfg, "unused-reference-path")
    assert obj.learner is cfg.learner
    assert type(obj).__name__ == ("ActorCriticObjective" if algo == "actor_critic"
                                  else "RLTFObjective")


def test_a_call_travels_as_parcels_of_whole_groups_whose_summaries_count_every_program(
        tmp_path):
    from dataclasses import replace

    from actors.experience import ParcelSummary
    from actors.samples import make_parcels

    offsets = [(0, 6), (6, 12)]
    a = [_sample(k, "x = 1\ny = z\n", offsets, greedy=k == 0) for k in range(3)]
    others = [[replace(s, task_id=f"p{t}", sample_id=s.sample_id.replace("p0", f"p{t}"),
                       group_id=f"p{t}/v3/s-0") for s in a] for t in (1, 2)]
    b, c = others
    stored = []

    def put(contents):  # the object store, as the sampler actor's ray.put
        stored.append(contents)
        return len(stored) - 1

    refs = {"p0": "ref-p0", "p1": "ref-p1", "p2": "ref-p2"}
    # three groups (interleaved, as rows come) for two executors: two parcels of whole
    # groups in order, about the same samples each; the samples stay behind a reference
    parcels = make_parcels([a[0], b[0], c[0], a[1], b[1], c[1], a[2], b[2], c[2]], refs, 2, put)
    assert [(x.parcel_id, x.samples, x.groups, x.policy_version) for x in parcels] == [
        ("s-0/0", 6, 2, 3), ("s-0/1", 3, 1, 3)]
    assert stored[parcels[0].ref] == [("ref-p0", a), ("ref-p1", b)]
    assert stored[parcels[1].ref] == [("ref-p2", c)]
    # never more parcels than groups, never an empty one
    assert [x.samples for x in make_parcels(a + b, refs, 5, put)] == [3, 3]
    assert make_parcels([], refs, 2, put) == []
    # an executor judges parcel 0: its summary counts outcomes, slices and rewards
    results = {s.sample_id: _result(k, "pass" if k == 1 else "fail", passed=2 if k == 1 else 1,
                                    duration_s=0.5) for k, s in enumerate(a)}
    results.update({s.sample_id: _result(k, "pass", passed=2, duration_s=0.5)
                    for k, s in enumerate(b)})
    summary, made = ParcelSummary(parcel_id="s-0/0"), []
    for problem, group in ((_problem(0).model_copy(update={"metadata": {"teacher": "tests"}}),
                            a), (_problem(1), b)):
        g = Group(problem, group, {s.sample_id: results[s.sample_id] for s in group})
        exps, _ = experiences_from_group(g, build_config().reward)
        summary.add(g, exps)
        made += exps
    summary.kept = len(made)
    assert (summary.samples, summary.outcomes, summary.kept, summary.rewards) == (
        6, {"fail": 2, "pass": 4}, 4, 4)  # the greedy rows are baselines, not experiences
    assert summary.slices == {("tests", False): 2, ("tests", True): 1, ("all", True): 3}
    assert summary.reward_sum == pytest.approx(sum(e.reward for e in made))
    t = _trainer(tmp_path)
    for x in parcels:
        t.account_submitted(x.parcel_id, x.samples)
    assert t.account_parcel(summary) == 6
    assert (t.programs_judged, t.outcomes["pass"], t.slice_window[("tests", True)]) == (6, 4, 1)
    assert t.reward_window == [pytest.approx(summary.reward_sum), 4]
    # parcel 1's sampler died before an executor fetched it: abandoned, not judged
    lost = ParcelSummary(parcel_id="s-0/1", lost="OwnerDiedError: the sampler that held it died")
    assert t.account_parcel(lost) == 0
    assert (t.programs_submitted, t.programs_judged, t.programs_abandoned,
            t.outstanding) == (9, 6, 3, {})
    # a summary that comes twice counts once; one that does not match its parcel is refused
    assert t.account_parcel(summary) == 0
    assert t.results_unexpected == 6 and t.programs_judged == 6
    t.account_submitted("s-0/2", 5)
    with pytest.raises(ValueError, match="5 were submitted"):
        t.account_parcel(replace(summary, parcel_id="s-0/2"))


def test_draws_take_each_problem_once_per_epoch_in_an_order_any_process_can_rebuild(tmp_path):
    from actors.samples import ProblemDraw, problem_order

    t = _trainer(tmp_path)
    n = len(t.train_problems)
    draws = [t.next_draw(3) for _ in range(n)]  # 3 epochs' worth
    assert draws[0] == ProblemDraw(0, 0, 3) and (t.epoch, t.cursor) == (3, 0)
    taken = [i for d in draws for i in d.indices(n, t.cfg.seed)]
    for e in range(3):
        assert taken[e * n:(e + 1) * n] == problem_order(n, t.cfg.seed, e)  # each once
    assert problem_order(n, t.cfg.seed, 0) != problem_order(n, t.cfg.seed, 1)
    # a draw larger than the problem set runs on into the next epochs
    assert ProblemDraw(0, 1, 2 * n).indices(n, 5) == (
        problem_order(n, 5, 0)[1:] + problem_order(n, 5, 1) + problem_order(n, 5, 2)[:1])
    with pytest.raises(ValueError, match="no training problems"):
        ProblemDraw(0, 0, 1).indices(0, 5)


def test_samplers_pause_while_max_queue_samples_wait_for_the_learner(tmp_path):
    # the defaults: 8 prompts x (4 sampled + 1 greedy) = 40 samples a call
    t = _trainer(tmp_path, ["train.max_queue=64"])
    assert t.room_to_generate(calls=0, backlog=0, buffered=0, learning=True)
    assert t.room_to_generate(calls=0, backlog=40, buffered=23, learning=True)  # 63 < 64
    assert not t.room_to_generate(calls=0, backlog=40, buffered=24, learning=True)
    assert not t.room_to_generate(calls=1, backlog=0, buffered=24, learning=False)
    # a full buffer as last seen, nothing in flight and the learner idle: go on (the buffer
    # may have dropped stale samples since, or restarted empty)
    assert t.room_to_generate(calls=0, backlog=0, buffered=500, learning=False)
    assert not t.room_to_generate(calls=0, backlog=0, buffered=500, learning=True)
