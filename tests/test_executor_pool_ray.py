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
