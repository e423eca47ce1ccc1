"""The request path between a worker and its fork-server: requests queued behind a running
program, a fork-server that dies with requests queued, requests too large to queue, the
in-process pool's event loop, and the weakest isolation tier (no namespaces)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from core.config import ExecutorConfig
from executor.pool import ExecutorPool
from core.records import Problem, Solution
from executor.worker import Lane, Worker

pytestmark = pytest.mark.integration

SQUARE = Problem(task_id="square", prompt="", format="call", fn_name="f", time_limit_s=5.0,
                 tests=[{"input": [7], "output": 49}, {"input": [12], "output": 144}])
GOOD = "def f(x):\n    return x * x\n"
SLOW = "import time\ndef f(x):\n    time.sleep(0.4)\n    return x * x\n"


def _sol(program: str, sample_id) -> Solution:
    return Solution(task_id="square", completion=program, sample_id=sample_id)


def test_the_next_request_waits_at_the_fork_server(worker):
    lane = Lane(worker, depth=2)
    lane.add("a", SQUARE, _sol(SLOW, "a"))
    lane.add("b", SQUARE, _sol(GOOD, "b"))
    # Both are at the fork-server before the first answer is read.
    assert [job.sent for job in lane.jobs] == [True, True]
    key_a, res_a = lane.next()
    key_b, res_b = lane.next()
    assert (key_a, res_a.sample_id, res_a.outcome) == ("a", "a", "pass")
    assert (key_b, res_b.sample_id, res_b.outcome) == ("b", "b", "pass")
    assert not lane.jobs


def test_a_fork_server_that_dies_with_requests_queued_loses_none():
    with Worker() as w:
        lane = Lane(w, depth=2)
        lane.add(1, SQUARE, _sol(SLOW, 1))
        lane.add(2, SQUARE, _sol(GOOD, 2))
        pid = w.fork_server_pid()
        time.sleep(0.15)  # the slow program is running, the second request waits
        os.kill(pid, signal.SIGKILL)
        got = [lane.next(), lane.next()]
        assert [(k, r.sample_id, r.outcome) for k, r in got] == [(1, 1, "pass"), (2, 2, "pass")]
        assert w.restarts == 1 and w.fork_server_pid() != pid


def test_a_program_the_fork_server_dies_on_twice_is_a_crash_and_the_next_one_runs():
    # In the minimal tier a program runs as the fork-server's user and can kill the zygote,
    # its parent; the fork-server then exits.
    killer = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef f(x):\n    return 0\n"
    with Worker(ExecutorConfig(isolation="minimal", wall_limit_factor=1.0)) as w:
        lane = Lane(w, depth=2)
        lane.add("killer", SQUARE, _sol(killer, "killer"))
        lane.add("good", SQUARE, _sol(GOOD, "good"))
        (k1, r1), (k2, r2) = lane.next(), lane.next()
        assert (k1, r1.outcome, r1.error_type) == ("killer", "runtime_error", "SandboxCrash")
        assert (k2, r2.outcome) == ("good", "pass")
        assert w.restarts == 2


def test_requests_too_large_to_queue_are_sent_one_at_a_time(worker):
    # Two requests each larger than half the request pipe: the second is sent only after the
    # first is answered, so neither side can block the other.
    size = worker._server.pipe_capacity  # one argument of this many characters
    big = Problem(task_id="big", prompt="", format="call", fn_name="f", time_limit_s=5.0,
                  tests=[{"input": ["x" * size], "output": size}])
    lane = Lane(worker, depth=2)
    for i in range(2):
        lane.add(i, big, Solution(task_id="big", completion="def f(s):\n    return len(s)\n",
                                  sample_id=i))
    assert [job.sent for job in lane.jobs] == [True, False]
    results = [lane.next(), lane.next()]
    assert [(k, r.outcome) for k, r in results] == [(0, "pass"), (1, "pass")]


def test_in_process_pool_runs_without_threads():
    before = threading.active_count()
    pairs = [(SQUARE, _sol(GOOD if i % 3 else "def f(x):\n    return x\n", i)) for i in range(30)]
    with ExecutorPool(ExecutorConfig(workers=2, max_in_flight=3)) as pool:
        assert threading.active_count() == before
        results = pool.run(pairs)
        assert pool.busy_workers() == 0 and pool.backlog() == 0
    assert [r.sample_id for r in results] == list(range(30))
    assert [r.outcome for r in results] == ["fail" if i % 3 == 0 else "pass" for i in range(30)]


def test_poll_waits_at_most_its_timeout():
    with ExecutorPool(ExecutorConfig(workers=1)) as pool:
        assert pool.poll(0.05) == []  # nothing submitted
        pool.submit("slow", SQUARE, _sol(SLOW, "slow"))
        t0 = time.monotonic()
        assert pool.poll(0.1) == []  # not finished yet: back after the timeout
        assert time.monotonic() - t0 < 0.35
        got = []
        while not got:
            got = pool.poll(1.0)
        assert [(k, r.outcome) for k, r in got] == [("slow", "pass")]


def test_minimal_tier_judges_and_cleans_up():
    # No namespaces and no separate UID: the zygote is a subreaper, and kills the program's
    # process group after it.
    prog = ("import os, time\ndef f(x):\n    if os.fork() == 0:\n        time.sleep(100)\n"
            "    return x * x\n")
    with Worker(ExecutorConfig(isolation="minimal", wall_limit_factor=1.0)) as w:
        assert w.tier == "minimal"
        assert w.run(SQUARE, _sol(GOOD, 0)).outcome == "pass"
        r = w.run(SQUARE, _sol(prog, 1))
        assert r.outcome == "pass"
        zygote = int(open(f"/proc/{w.fork_server_pid()}/task/{w.fork_server_pid()}/children")
                     .read().split()[0])
        left = open(f"/proc/{zygote}/task/{zygote}/children").read().split()
        assert left == []  # the sleeping child was killed and reaped
        quick = SQUARE.model_copy(update={"time_limit_s": 0.5})
        r = w.run(quick, _sol("import time\ndef f(x):\n    time.sleep(100)\n", 2))
        assert r.outcome == "timeout" and r.error_line == 3


def test_inputs_that_marshal_cannot_carry_still_reach_the_program(worker):
    # The child's request travels as one marshal blob; a value marshal rejects (a range)
    # switches that request to pickle.
    p = Problem(task_id="r", prompt="", format="call", fn_name="f",
                tests=[{"input": [range(3)], "output": 3}, {"input": [[1, 2]], "output": 2}])
    r = worker.run(p, Solution(task_id="r", completion="def f(r):\n    return len(r)\n"))
    assert r.outcome == "pass" and r.tests == ["pass", "pass"]


def test_each_program_starts_in_an_empty_working_directory(worker):
    leave = ("import os\nos.makedirs('d/e', exist_ok=True)\nopen('d/e/f', 'w').write('x')\n"
             "os.chmod('d', 0o500)\ndef f(x):\n    return x * x\n")
    look = "import os\ndef f(x):\n    return x * x + len(os.listdir('.'))\n"
    assert worker.run(SQUARE, _sol(leave, 0)).outcome == "pass"
    assert worker.run(SQUARE, _sol(look, 1)).outcome == "pass"  # a leftover would add 1
    assert worker.run(SQUARE, _sol(look, 2)).outcome == "pass"


def test_executor_actor_queues_calls_to_one_lane():
    # The Ray actor's interface, driven in-process: concurrent calls all come back, each with
    # its own result, and a worker that cannot go on fails every waiting call instead of
    # leaving it hanging.
    import asyncio

    from cluster.executor_actor import ExecutorActor

    actor = ExecutorActor(ExecutorConfig())

    async def calls(programs):
        return await asyncio.gather(
            *(actor.run(SQUARE, _sol(prog, i)) for i, prog in enumerate(programs)),
            return_exceptions=True)

    progs = [GOOD, "def f(x):\n    return x\n", SLOW, GOOD, "def f(x) return\n"]
    got = asyncio.run(calls(progs))
    assert [r.sample_id for r in got] == list(range(5))
    assert [r.outcome for r in got] == ["pass", "fail", "pass", "pass", "syntax_error"]
    # Several programs in one call: their results in order.
    batch = asyncio.run(actor.run_batch([(SQUARE, _sol(p, i)) for i, p in enumerate(progs)]))
    assert [(r.sample_id, r.outcome) for r in batch] == [(r.sample_id, r.outcome) for r in got]

    def broken_start():
        raise RuntimeError("sandbox could not start: test")

    actor.worker._start = broken_start
    os.kill(actor.worker.fork_server_pid(), signal.SIGKILL)
    actor.worker._server.proc.wait()
    got = asyncio.run(calls([GOOD, GOOD, GOOD]))
    assert all(isinstance(r, RuntimeError) and "could not start" in str(r) for r in got)
    batch = asyncio.run(actor.run_batch([(SQUARE, _sol(GOOD, i)) for i in range(2)]))
    assert all(isinstance(r, RuntimeError) and "could not start" in str(r) for r in batch)


AFFINITY = "import os\ndef f():\n    return sorted(os.sched_getaffinity(0))\n"
_ALLOWED = sorted(os.sched_getaffinity(0))
_needs_two_cpus = pytest.mark.skipif(len(_ALLOWED) < 2, reason="one CPU: nothing to spread")


def _affinity_problem(expected: list[int]) -> Problem:
    return Problem(task_id="cpus", prompt="", format="call", fn_name="f", time_limit_s=5.0,
                   tests=[{"input": [], "output": expected}])


@_needs_two_cpus
def test_fork_servers_of_a_host_take_the_cpus_in_turn(tmp_path, monkeypatch):
    from executor import sandbox

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # slots of this test's own
    claims = [sandbox.claim_cpu() for _ in range(len(_ALLOWED) + 1)]
    try:
        cpus = [cpu for cpu, _ in claims]
        assert sorted(cpus[:-1]) == _ALLOWED  # one each while there are enough
        assert cpus[-1] == cpus[0]  # then round again
        os.close(claims[1][1])  # a fork-server ends: its CPU is the next one taken
        again = sandbox.claim_cpu()
        assert again[0] == cpus[1]
        os.close(again[1])
    finally:
        for i, (_, fd) in enumerate(claims):
            if i != 1:
                os.close(fd)


@_needs_two_cpus
def test_a_cpu_slot_is_found_when_others_take_every_slot_it_knew_of(tmp_path, monkeypatch):
    # Fork-servers that start together (other workers, other jobs on the host) create and
    # take slots while this one looks: it looks further instead of failing to start.
    import fcntl

    from executor import sandbox

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    lock_dir = tmp_path / "rltf-sandbox-cpus"
    lock_dir.mkdir()
    taken = []
    for n in range(len(_ALLOWED) + 1):
        fd = os.open(lock_dir / str(n), os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        taken.append(fd)
    monkeypatch.setattr(os, "listdir", lambda path: [])  # it looked before they were made
    try:
        cpu, fd = sandbox.claim_cpu()
        slot = len(_ALLOWED) + 1  # the first free slot
        assert cpu == _ALLOWED[slot % len(_ALLOWED)] and fd is not None
        os.close(fd)
    finally:
        for fd in taken:
            os.close(fd)


@_needs_two_cpus
def test_programs_run_on_their_workers_cpu_unless_pinning_is_off():
    with Worker(ExecutorConfig()) as pinned:
        assert pinned.cpu in _ALLOWED
        res = pinned.run(_affinity_problem([pinned.cpu]), Solution(task_id="cpus",
                                                                    completion=AFFINITY))
        assert res.outcome == "pass", res
    with Worker(ExecutorConfig(pin_cpus=False)) as free:
        assert free.cpu is None
        res = free.run(_affinity_problem(_ALLOWED), Solution(task_id="cpus",
                                                             completion=AFFINITY))
        assert res.outcome == "pass", res


def test_closing_a_fork_server_twice_leaves_other_descriptors_alone():
    # A worker whose restart failed closes its old fork-server again on the next attempt; by
    # then its descriptor numbers may belong to someone else (an event loop's wake-up pipe).
    w = Worker(ExecutorConfig())
    server = w._server
    server.proc.kill()
    server.close()
    r, wr = os.pipe()  # likely the numbers just freed
    try:
        server.close()
        os.fstat(r)
        os.fstat(wr)
    finally:
        os.close(r)
        os.close(wr)
        w.close()


def test_queued_problems_tests_are_rewritten_while_the_sandboxes_run():
    # While the only worker runs a slow program, the pool's loop rewrites the assert tests of
    # problems still waiting in its queue, so their programs start without that delay.
    from executor.worker import _PlanCache

    def problem(i):
        return Problem(task_id=f"ahead-{i}", prompt="", format="assert", entry_point="f",
                       tests=[f"assert f({i}) == {i * i}"])

    with ExecutorPool(ExecutorConfig(workers=1)) as pool:
        plans = pool._workers[0]._plans = _PlanCache()  # this test's own
        pool._lanes[0].worker._plans = plans
        slow = "import time\ndef f(x):\n    time.sleep(1.0)\n    return x * x\n"
        for i in range(5):
            pool.submit(i, problem(i), Solution(task_id=f"ahead-{i}", sample_id=i,
                                                completion=slow if i == 0 else GOOD))
        assert [plans.has(problem(i)) for i in range(5)] == [True, True, False, False, False]
        assert pool.poll(0.5) == []  # the slow program is still running
        assert all(plans.has(problem(i)) for i in range(5))
        got = {}
        while len(got) < 5:
            got.update(pool.poll(5.0))
        assert all(r.outcome == "pass" for r in got.values())
