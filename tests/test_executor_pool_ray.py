"""The Ray executor pool on a real local Ray instance: same verdicts as in-process, and a killed
executor actor loses nothing (every program gets exactly one result)."""

from __future__ import annotations

import pytest

from core.config import ExecutorConfig
from cluster.executor_pool import make_pool
from executor.pool import ExecutorPool
from core.records import Solution
from problems.humaneval import load_humaneval

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(_node_ip_address="127.0.0.1", num_cpus=3, include_dashboard=False,
             log_to_driver=False, namespace="rltf-test-executor")
    yield ray
    ray.shutdown()


def _pairs(n_copies: int = 1):
    problems = load_humaneval()[:60]
    pairs = []
    for copy in range(n_copies):
        for p in problems:
            body = p.solutions[0] if (copy + len(p.task_id)) % 3 else p.prompt + "    return None\n"
            pairs.append((p, Solution(task_id=p.task_id, completion=body,
                                      sample_id=f"{p.task_id}#{copy}")))
    return pairs


def test_ray_pool_matches_local_pool(ray_local):
    pairs = _pairs()
    cfg = ExecutorConfig(workers=2)
    with ExecutorPool(cfg) as local:
        expected = [(r.outcome, r.tests) for r in local.run(pairs)]
    with make_pool(cfg, use_ray=True) as pool:
        assert pool.tier == local.tier
        got = [(r.outcome, r.tests) for r in pool.run(pairs)]
    assert got == expected
    assert {o for o, _ in got} >= {"pass", "fail"}


def test_killed_actor_loses_nothing(ray_local):
    ray = ray_local
    pairs = _pairs(n_copies=4)
    cfg = ExecutorConfig(workers=2, max_in_flight=8)
    with ExecutorPool(cfg) as local:
        clean = {s.sample_id: (r.outcome, r.tests) for (p, s), r in zip(pairs, local.run(pairs))}
    seen: dict = {}
    with make_pool(cfg, use_ray=True) as pool:
        kills = 0
        for idx, res in pool.imap(pairs):
            assert idx not in seen, "a program got two results"
            seen[idx] = res
            if len(seen) in (40, 120) and kills < 2:
                ray.kill(pool._slots.actors[kills % 2], no_restart=True)
                kills += 1
        assert pool.replaced == 2
    assert sorted(seen) == list(range(len(pairs)))
    got = {pairs[i][1].sample_id: (r.outcome, r.tests) for i, r in seen.items()}
    assert got == clean


def test_resize_while_running(ray_local):
    pairs = _pairs(n_copies=2)
    cfg = ExecutorConfig(workers=1, max_in_flight=4)
    seen = {}
    with make_pool(cfg, use_ray=True) as pool:
        for idx, res in pool.imap(pairs):
            seen[idx] = res
            if len(seen) == 20:
                assert pool.resize(2) == 2
            if len(seen) == 60:
                assert pool.resize(1) == 1
        assert pool.size == 1
    assert sorted(seen) == list(range(len(pairs)))


def test_submit_and_poll(ray_local):
    pairs = _pairs()[:10]
    with make_pool(ExecutorConfig(workers=2), use_ray=True) as pool:
        for i, (p, s) in enumerate(pairs):
            pool.submit(("k", i), p, s)
        assert pool.backlog() == 10
        got = {}
        while len(got) < 10:
            for key, res in pool.poll(1.0):
                got[key] = res
        assert pool.backlog() == 0
    assert sorted(got) == [("k", i) for i in range(10)]


@pytest.mark.parametrize("use_ray", [False, True])
def test_run_while_programs_are_submitted_loses_nothing(ray_local, use_ray):
    # The training driver submits programs and polls for them while a held-out evaluation
    # runs pool.run() on the same pool: each call must get exactly its own results.
    pairs = _pairs()[:24]
    with make_pool(ExecutorConfig(workers=2, max_in_flight=2), use_ray=use_ray) as pool:
        for i, (p, s) in enumerate(pairs[:12]):
            pool.submit(("train", i), p, s)
        evaluated = pool.run(pairs[12:])
        assert [r.sample_id for r in evaluated] == [s.sample_id for _, s in pairs[12:]]
        assert pool.backlog() <= 12
        got = {}
        while len(got) < 12:
            for key, res in pool.poll(1.0):
                assert key not in got
                got[key] = res
        assert pool.backlog() == 0
    assert sorted(got) == [("train", i) for i in range(12)]
    assert all(got[("train", i)].sample_id == pairs[i][1].sample_id for i in range(12))


def test_chaos_random_executor_kills_over_500_programs(ray_local):
    # Executor actors are killed at random moments (seeded) while 524 programs are judged:
    # every program still gets exactly one result, and the same verdict as without kills.
    import random

    ray = ray_local
    pairs = _pairs(n_copies=7) + [
        (p, Solution(task_id=p.task_id, completion=p.solutions[0], sample_id=f"{p.task_id}#x"))
        for p in load_humaneval()[60:]]
    assert len(pairs) >= 500
    cfg = ExecutorConfig(workers=2, max_in_flight=6)
    with ExecutorPool(cfg) as local:
        clean = {s.sample_id: (r.outcome, r.tests) for (p, s), r in zip(pairs, local.run(pairs))}
    rng = random.Random(7)
    kill_at = set(rng.sample(range(20, len(pairs) - 20), 6))
    seen: dict = {}
    with make_pool(cfg, use_ray=True) as pool:
        for idx, res in pool.imap(pairs):
            assert idx not in seen, "a program got two results"
            seen[idx] = res
            if len(seen) in kill_at:
                victim = pool._slots.actors[rng.randrange(len(pool._slots.actors))]
                ray.kill(victim, no_restart=True)
        assert pool.replaced == len(kill_at)
        assert pool.size == 2
    assert sorted(seen) == list(range(len(pairs)))
    got = {pairs[i][1].sample_id: (r.outcome, r.tests) for i, r in seen.items()}
    assert got == clean


def test_poll_returns_results_without_waiting_for_a_slow_call(ray_local):
    # One actor runs a program that sleeps 20 s; the other's results must come back as soon as
    # they are ready, not when every call in flight has ended.
    import time

    from core.records import Problem

    square = Problem(task_id="sq", prompt="", format="call", fn_name="f", time_limit_s=30.0,
                     tests=[{"input": [3], "output": 9}])
    slow = Solution(task_id="sq", completion="import time\ndef f(x):\n    time.sleep(20)\n"
                    "    return x * x\n", sample_id="slow")
    with make_pool(ExecutorConfig(workers=2), use_ray=True) as pool:
        pool.submit("slow", square, slow)
        t0 = time.monotonic()
        for i in range(6):
            pool.submit(i, square, Solution(task_id="sq", completion="def f(x):\n    return x * x\n",
                                            sample_id=str(i)))
        got = {}
        while len(got) < 3 and time.monotonic() - t0 < 25:
            got.update(pool.poll(25.0))
        assert len(got) >= 3 and "slow" not in got
        assert all(r.outcome == "pass" for r in got.values())
        assert time.monotonic() - t0 < 15.0


def _group_samples(problems, call: str):
    """Per problem a group as a sampler makes one: the greedy sample (a wrong body) and two
    sampled ones (the reference solution), one token per line."""
    from actors.samples import Sample

    out = []
    for p in problems:
        gid = f"{p.task_id}/v0/{call}"
        for k, body in enumerate([p.prompt + "    return None\n"] + [p.solutions[0]] * 2):
            lines = body.splitlines(keepends=True)
            ends = [sum(map(len, lines[:i + 1])) for i in range(len(lines))]
            out.append(Sample(task_id=p.task_id, sample_id=f"{gid}-{k}", group_id=gid,
                              is_greedy=k == 0, prompt="", program_prefix="", completion=body,
                              program=body, prompt_token_ids=[1, 2],
                              token_ids=list(range(3, 3 + len(lines))),
                              token_offsets=list(zip([0] + ends[:-1], ends)),
                              logprobs=[-0.5] * len(lines), policy_version=0,
                              finish_reason="length"))
    return out


def test_parcels_by_reference_reach_the_buffer_once_despite_kills(ray_local):
    # Parcels of groups go from their owner (as a sampler actor puts them) to the executors
    # by reference; the executors judge them, add the experiences to the buffer and answer
    # with summaries of counts. An executor killed mid-run has its parcels judged again and
    # the buffer keeps one copy of each sample; a parcel whose owner died before it was
    # fetched comes back lost.
    ray = ray_local
    from actors.replay_buffer import ReplayBuffer
    from actors.samples import make_parcels
    from core.config import BufferConfig, RewardConfig

    @ray.remote(num_cpus=0)
    class Owner:
        def put(self, samples, problem_refs, parts):
            return make_parcels(samples, problem_refs, parts, ray.put)

    problems = load_humaneval()[:12]
    refs = {p.task_id: ray.put(p) for p in problems}
    owner, doomed = Owner.remote(), Owner.remote()
    kept = ray.get(owner.put.remote(_group_samples(problems[:10], "s-0"), refs, 5))
    lost = ray.get(doomed.put.remote(_group_samples(problems[10:], "s-1"), refs, 2))
    assert [(x.samples, x.groups) for x in kept + lost] == [(6, 2)] * 5 + [(3, 1)] * 2
    ray.kill(doomed, no_restart=True)
    buffer = ray.remote(ReplayBuffer).remote(BufferConfig(capacity=100, mode="fifo"))
    rcfg = ray.put(RewardConfig())
    summaries = {}
    with make_pool(ExecutorConfig(workers=2, max_in_flight=6), use_ray=True) as pool:
        for x in kept + lost:
            pool.submit_parcel(x.parcel_id, x.samples, ([x.ref], rcfg, buffer, x.parcel_id))
        killed = False
        while len(summaries) < len(kept) + len(lost):
            for key, summary in pool.poll_parcels(1.0):
                assert key not in summaries, "a parcel answered twice"
                summaries[key] = summary
                if not killed:  # the other actor holds parcels now: kill it
                    ray.kill(pool._slots.actors[1], no_restart=True)
                    killed = True
        assert pool.replaced == 1 and pool.backlog() == 0
        # the same parcel judged a second time (as after a kill at the wrong moment)
        again = pool._slots.actors[0].judge_parcel.remote(
            [kept[0].ref], rcfg, buffer, kept[0].parcel_id)
        assert ray.get(again).kept == 0
    for x in kept:
        s = summaries[x.parcel_id]
        # per group: the greedy row fails, the two references pass
        assert s.lost is None and s.samples == 6 and s.outcomes.get("pass") == 4
        assert s.rewards == 4  # the greedy samples are baselines, not experiences
    for x in lost:
        assert "died" in summaries[x.parcel_id].lost
    stats = ray.get(buffer.stats.remote())
    assert (stats.size, stats.added) == (20, 20)
    # the second judging above, and any parcel its killed actor had added before it died
    assert stats.dropped_duplicate == 4 + sum(4 - s.kept for s in summaries.values()
                                              if s.lost is None)
