"""Hostile programs, one behaviour per test. None may pass, kill or hang the executor, leave a
process behind, or touch the host's file system or network."""

from __future__ import annotations

import os
import socket
import threading
import uuid

import pytest

from core.config import ExecutorConfig
from core.records import Problem, Solution
from executor.worker import Worker

pytestmark = pytest.mark.integration

# f(x) = x * x; the tests' expected values are never visible to the program.
SQUARE = Problem(task_id="square", prompt="", format="call", fn_name="f", time_limit_s=1.0,
                 tests=[{"input": [7], "output": 49}, {"input": [12], "output": 144}])
SQUARE_ASSERT = Problem(task_id="square-assert", prompt="", format="assert", entry_point="f",
                        time_limit_s=1.0, tests=["assert f(7) == 49", "assert f(12) == 144"])
SQUARE_STDIO = Problem(task_id="square-stdio", prompt="", format="stdio", time_limit_s=1.0,
                       tests=[{"input": "7\n", "output": "49\n"}])


@pytest.fixture(scope="module")
def hostile_worker():
    # Wall-clock limit = the time limit (factor 1): sleeping and blocked programs end as soon
    # as programs that spin (the factor itself is tested in test_executor_formats.py).
    w = Worker(ExecutorConfig(memory_mb=512, program_budget_s=6, output_limit_kb=256,
                              max_processes=8, wall_limit_factor=1.0))
    yield w
    w.close()


def _sandbox_processes(uid: int | None) -> list[int]:
    if uid is None:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                for line in fh:
                    if line.startswith("Uid:") and int(line.split()[1]) == uid:
                        pids.append(int(entry))
        except OSError:
            continue
    return pids


def survive(w: Worker, program: str, problem: Problem = SQUARE):
    """The result of `program`, after checking that the executor survived it, still judges
    correctly, and has nothing left running."""
    server_pid = w.fork_server_pid()
    result = w.run(problem, Solution(task_id=problem.task_id, completion=program))
    assert w.fork_server_pid() == server_pid, "the fork-server had to be restarted"
    ok = w.run(SQUARE, Solution(task_id="square", completion="def f(x):\n    return x * x\n"))
    assert ok.outcome == "pass"
    assert _sandbox_processes(w.sandbox_uid) == []
    return result


def judge(w: Worker, program: str, problem: Problem = SQUARE):
    """As `survive`, for a program that must not pass a single test."""
    result = survive(w, program, problem)
    assert result.outcome != "pass" and result.passed == 0, result
    return result


def test_infinite_loop(hostile_worker):
    r = judge(hostile_worker, "def f(x):\n    while True:\n        pass\n")
    assert r.outcome == "timeout" and r.tests == ["timeout", "timeout"]
    assert r.error_line in (2, 3)


def test_c_level_infinite_loop(hostile_worker):
    r = judge(hostile_worker, "def f(x):\n    return sum(range(10 ** 13))\n")
    assert r.outcome == "timeout" and r.error_line == 2


def test_ignoring_sigalrm(hostile_worker):
    prog = ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "def f(x):\n    signal.alarm(1)\n    while True:\n        pass\n")
    assert judge(hostile_worker, prog).outcome == "timeout"


def test_sleeping(hostile_worker):
    r = judge(hostile_worker, "import time\ndef f(x):\n    time.sleep(1000)\n")
    assert r.outcome == "timeout" and r.error_line == 3


def test_huge_memory_bomb(hostile_worker):
    r = judge(hostile_worker, "def f(x):\n    return len(bytearray(10 ** 12))\n")
    assert r.outcome == "memory_error" and r.error_line == 2


def test_gradual_memory_bomb(hostile_worker):
    # Each test fills 512 MiB before the limit stops it: given time enough on a busy machine.
    prog = "def f(x):\n    hog = []\n    while True:\n        hog.append(' ' * 10 ** 6)\n"
    r = judge(hostile_worker, prog, SQUARE.model_copy(update={"time_limit_s": 10.0}))
    assert r.outcome in ("memory_error", "runtime_error")


def test_fork_bomb(hostile_worker):
    prog = ("import os\ndef f(x):\n    while True:\n        try:\n            os.fork()\n"
            "        except OSError:\n            pass\n")
    r = judge(hostile_worker, prog)
    assert r.outcome in ("timeout", "runtime_error")


def test_output_flood(hostile_worker):
    r = judge(hostile_worker, "while True:\n    print('x' * 10000)\n", SQUARE_STDIO)
    assert r.outcome == "output_limit"
    r = judge(hostile_worker, "def f(x):\n    while True:\n        print('x' * 10000)\n")
    assert r.outcome == "output_limit"


def test_writing_outside_the_temp_dir(hostile_worker, tmp_path):
    host_tmp = f"/tmp/rltf-hostile-{uuid.uuid4().hex}"
    inside_repo = os.path.join(os.path.dirname(__file__), f"hostile-{uuid.uuid4().hex}")
    prog = (f"def f(x):\n    for p in ({host_tmp!r}, {inside_repo!r}, {str(tmp_path / 'x')!r}):\n"
            "        try:\n            open(p, 'w').write('pwned')\n        except OSError:\n"
            "            pass\n    return 0\n")
    judge(hostile_worker, prog)
    assert not os.path.exists(host_tmp)
    assert not os.path.exists(inside_repo)
    assert not os.path.exists(tmp_path / "x")


def test_opening_a_loopback_connection(hostile_worker):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(3)
    port = server.getsockname()[1]
    got = []

    def accept():
        try:
            conn, _ = server.accept()
            got.append(conn)
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    prog = ("import socket\ndef f(x):\n    s = socket.socket()\n"
            f"    s.connect(('127.0.0.1', {port}))\n    return x * x\n")
    r = judge(hostile_worker, prog)
    t.join()
    server.close()
    assert got == []
    assert r.outcome == "runtime_error" and r.error_type in ("OSError", "ConnectionRefusedError")


@pytest.mark.parametrize("kill", ["os.kill(os.getppid(), signal.SIGKILL)",
                                  "os.killpg(os.getpgid(0), signal.SIGKILL)",
                                  "os.kill(-1, signal.SIGKILL)"])
def test_killing_the_parent_or_the_group(hostile_worker, kill):
    prog = f"import os, signal\ndef f(x):\n    {kill}\n    return x * x + 1\n"
    judge(hostile_worker, prog)


@pytest.mark.parametrize("where", ["import", "function"])
@pytest.mark.parametrize("how", ["sys.exit(0)", "os._exit(0)"])
def test_exiting_early(hostile_worker, where, how):
    if where == "import":
        prog = f"import os, sys\n{how}\ndef f(x):\n    return x * x\n"
    else:
        prog = f"import os, sys\ndef f(x):\n    {how}\n"
    judge(hostile_worker, prog)
    judge(hostile_worker, prog, SQUARE_ASSERT)


def test_closing_stdout_and_every_descriptor(hostile_worker):
    prog = ("import os, sys\ndef f(x):\n    sys.stdout.close()\n    for fd in range(64):\n"
            "        try:\n            os.close(fd)\n        except OSError:\n            pass\n"
            "    return x * x\n")
    r = judge(hostile_worker, prog)
    assert r.tests == ["crash", "crash"] or r.outcome != "pass"


def test_recursion_until_the_interpreter_crashes(hostile_worker):
    # repr() of a deeply nested list recurses in C: with the limit lifted, the C stack
    # overflows and the interpreter dies with SIGSEGV.
    prog = ("import sys\nsys.setrecursionlimit(10 ** 9)\ndef f(x):\n    nest = []\n"
            "    for _ in range(10 ** 6):\n        nest = [nest]\n    return len(repr(nest))\n")
    r = judge(hostile_worker, prog)
    assert r.outcome in ("runtime_error", "memory_error", "timeout")
    assert r.tests[0] in ("crash", "memory_error", "timeout", "error")


def test_always_equal_object(hostile_worker):
    prog = ("class Eq:\n    def __eq__(self, other):\n        return True\n"
            "    __hash__ = object.__hash__\ndef f(x):\n    return Eq()\n")
    judge(hostile_worker, prog)
    judge(hostile_worker, prog, SQUARE_ASSERT)


def test_always_equal_subclass_of_int(hostile_worker):
    prog = ("class Eq(int):\n    def __eq__(self, other):\n        return True\n"
            "def f(x):\n    return Eq(0)\n")
    judge(hostile_worker, prog)
    judge(hostile_worker, prog, SQUARE_ASSERT)


def test_shadowing_builtins(hostile_worker):
    prog = ("import builtins, json\nbuiltins.isinstance = lambda *a: True\n"
            "builtins.type = lambda *a: int\njson.dumps = lambda *a, **k: '49'\n"
            "def f(x):\n    return 0\n")
    judge(hostile_worker, prog)
    judge(hostile_worker, prog, SQUARE_ASSERT)


def test_forged_result_messages_on_every_descriptor(hostile_worker):
    prog = (
        "import json, os, struct\n"
        "def frame(obj):\n    b = json.dumps(obj).encode()\n    return struct.pack('>I', len(b)) + b\n"
        "FORGED = b''.join(frame(o) for o in [\n"
        "    {'t': 'ready'}, {'t': 'end', 'k': 0, 'status': 'pass'}, {'t': 'end', 'k': 1, 'ok': True},\n"
        "    {'t': 'end', 'k': 0, 'events': [{'k': 'group', 'site': 0}, {'k': 'endgroup', 'site': 0}]},\n"
        "    {'t': 'done', 'passed': 2}, {'outcome': 'pass'}])\n"
        "for fd in range(256):\n    try:\n        os.write(fd, FORGED)\n    except OSError:\n        pass\n"
        "def f(x):\n    for fd in range(256):\n        try:\n            os.write(fd, FORGED)\n"
        "        except OSError:\n            pass\n    os._exit(0)\n")
    judge(hostile_worker, prog)
    judge(hostile_worker, prog, SQUARE_ASSERT)


def test_daemons_that_outlive_the_program(hostile_worker):
    prog = ("import os, time\ndef f(x):\n    if os.fork() == 0:\n        os.setsid()\n"
            "        if os.fork() == 0:\n            time.sleep(100)\n        os._exit(0)\n"
            "    return x * x + 1\n")
    judge(hostile_worker, prog)


def test_flooding_the_record_channel(hostile_worker):
    # Garbage on the record descriptor, forever: the executor stops trusting the channel,
    # still enforces the deadline, and the run ends within its time limits (a writer blocked
    # on the full pipe uses no CPU: the wall-clock limit, limit x wall_limit_factor, stops it).
    prog = ("import os\ndef f(x):\n    while True:\n        try:\n"
            "            os.write(3, b'\\x00\\x00\\xff\\xff' * 16384)\n"
            "        except OSError:\n            pass\n")
    r = judge(hostile_worker, prog)
    assert r.outcome in ("timeout", "runtime_error")
    wall_limit = SQUARE.time_limit_s * hostile_worker.cfg.wall_limit_factor
    assert r.duration_s < len(SQUARE.tests) * wall_limit + 2


def test_forged_test_start_times(hostile_worker):
    # Records whose start stamps (time and CPU time) are NaN, infinite or in the future cannot
    # stretch a test's time limits: each still ends within its own (1 s here).
    prog = ("import json, os, struct\n"
            "def frame(obj):\n    b = json.dumps(obj).encode()\n    return struct.pack('>I', len(b)) + b\n"
            "def f(x):\n"
            "    for ts in (float('inf'), 1e300, float('nan')):\n"
            "        os.write(3, frame({'t': 'begin', 'k': 0, 'ts': ts, 'cpu': ts}))\n"
            "        os.write(3, frame({'t': 'end', 'k': 0, 'nb': ts, 'nbc': ts}))\n"
            "    while True:\n        pass\n")
    r = judge(hostile_worker, prog)
    wall_limit = SQUARE.time_limit_s * hostile_worker.cfg.wall_limit_factor
    assert r.outcome == "timeout" and r.duration_s < len(SQUARE.tests) * wall_limit + 1


def test_files_left_in_tmp_do_not_reach_the_next_program(hostile_worker):
    # The sandbox's /tmp and /dev/shm are private to its fork-server, and emptied between
    # programs: one sample cannot leave anything for the next to find.
    if "read-only fs" not in hostile_worker.isolation:
        pytest.skip("no file-system namespace here: /tmp is the host's")
    name = f"rltf-leak-{uuid.uuid4().hex}"
    writer = (f"import os\ndef f(x):\n    for d in ('/tmp', '/dev/shm'):\n"
              f"        os.makedirs(d + '/{name}-dir', exist_ok=True)\n"
              f"        open(d + '/{name}', 'w').write(str(x))\n    return x * x\n")
    first = hostile_worker.run(SQUARE, Solution(task_id="square", completion=writer))
    assert first.outcome == "pass"  # the writes themselves were allowed
    reader = (f"import os\ndef f(x):\n    left = [p for d in ('/tmp', '/dev/shm') for p in "
              f"(d + '/{name}', d + '/{name}-dir') if os.path.exists(p)]\n"
              "    return x * x if not left else -1\n")
    second = hostile_worker.run(SQUARE, Solution(task_id="square", completion=reader))
    assert second.outcome == "pass", second


# -- values that cross by structure: none of the program's own code runs in the judge --------
COUNTS = Problem(task_id="counts", prompt="", format="assert", entry_point="count",
                 time_limit_s=2.0, tests=["assert count('abca') == {'a': 2, 'b': 1, 'c': 1}",
                                          "assert count('') == {}"])
COUNTS_CALL = Problem(task_id="counts-call", prompt="", format="call", fn_name="count",
                      time_limit_s=2.0, tests=[{"input": ["abca"],
                                                "output": {"a": 2, "b": 1, "c": 1}}])


def test_counter_subclass_with_a_forged_eq(hostile_worker):
    forged = ("from collections import Counter\nclass C(Counter):\n"
              "    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
              "    def items(self):\n        return [('a', 2), ('b', 1), ('c', 1)]\n"
              "def count(s):\n    return C('zz')\n")
    for problem in (COUNTS, COUNTS_CALL):
        r = judge(hostile_worker, forged, problem)
        assert r.outcome == "fail"
        # The same class holding the right counts passes: it crosses as its Counter content.
        honest = forged.replace("C('zz')", "C(s)")
        r = hostile_worker.run(problem, Solution(task_id=problem.task_id, completion=honest))
        assert r.outcome == "pass", r


POINTS = Problem(task_id="points", prompt="", format="assert", entry_point="square_point",
                 time_limit_s=2.0, tests=["assert square_point(3) == Point(9)",
                                          "assert square_point(4).x == 16",
                                          "assert str(square_point(2)) == 'Point(4)'"])


def test_class_whose_fields_are_forged_at_compare_time(hostile_worker):
    # __eq__ copies the other side's fields and says yes; __getattribute__, __getattr__ and
    # __repr__ answer what a test would want. The judge reads the real fields.
    prog = ("class Point:\n    def __init__(self, x):\n        self.x = x\n"
            "    def __eq__(self, other):\n"
            "        object.__setattr__(self, 'x', getattr(other, 'x', None))\n"
            "        return True\n    __hash__ = object.__hash__\n"
            "    def __getattribute__(self, name):\n"
            "        return 16 if name == 'x' else object.__getattribute__(self, name)\n"
            "    def __repr__(self):\n        return 'Point(4)'\n"
            "def square_point(n):\n    return Point(0)\n")
    r = judge(hostile_worker, prog, POINTS)
    assert r.tests == ["fail", "fail", "unjudgeable"]
    honest = ("class Point:\n    def __init__(self, x):\n        self.x = x\n"
              "def square_point(n):\n    return Point(n * n)\n")
    r = hostile_worker.run(POINTS, Solution(task_id="points", completion=honest))
    assert r.tests == ["pass", "pass", "unjudgeable"] and r.outcome == "fail"
    assert r.error_type == "Unjudgeable" and "__repr__" in r.error_message


RING = Problem(task_id="ring", prompt="", format="assert", entry_point="ring",
               time_limit_s=2.0, tests=["assert ring(3) == ring_of([0, 1, 2])",
                                        "assert ring(2).next.next.value == 0",
                                        "assert loop() == [[]]"])


def test_structures_with_cycles(hostile_worker):
    # A ring of nodes compares by shape (the judge does not recurse forever); a list that
    # holds itself cannot cross and is unjudgeable, never a pass and never a crash.
    prog = ("class N:\n    def __init__(self, value):\n        self.value = value\n"
            "        self.next = self\n"
            "def ring_of(values):\n    nodes = [N(v) for v in values]\n"
            "    for a, b in zip(nodes, nodes[1:] + nodes[:1]):\n        a.next = b\n"
            "    return nodes[0]\n"
            "def ring(n):\n    return ring_of(list(range(n)))\n"
            "def loop():\n    x = []\n    x.append(x)\n    return x\n")
    r = survive(hostile_worker, prog, RING)
    assert r.tests == ["pass", "pass", "unjudgeable"] and r.error_type == "Unjudgeable"
    wrong = prog.replace("list(range(n))", "list(range(n))[::-1]")
    r = survive(hostile_worker, wrong, RING)
    assert r.tests[:2] == ["fail", "fail"]


HUGE = Problem(task_id="huge", prompt="", format="assert", entry_point="f", time_limit_s=10.0,
               tests=["assert len(f(1)) == 3"])
HUGE_CALL = Problem(task_id="huge-call", prompt="", format="call", fn_name="f",
                    time_limit_s=10.0, tests=[{"input": [1], "output": [0, 0, 0]}])


@pytest.mark.parametrize("problem", [HUGE, HUGE_CALL], ids=["assert", "call"])
def test_huge_structure(hostile_worker, problem):
    # Ten million items (one list shared a thousand times, so it is cheap to make): the
    # sandbox stops encoding at a million items, the test is unjudgeable, and the executor
    # goes on.
    prog = "def f(x):\n    row = [0] * 10000\n    return [row] * 1000\n"
    r = judge(hostile_worker, prog, problem)
    assert r.tests == ["unjudgeable"] and r.error_type == "Unjudgeable"
    assert "1,000,000 items" in r.error_message


FORGED = ("    def __eq__(self, other):\n        return True\n"
          "    def __ne__(self, other):\n        return False\n    __hash__ = None\n")
FORGED_KINDS = {  # a value of each kind with a forged __eq__, holding a wrong value
    "OrderedDict": "from collections import OrderedDict\nclass Liar(OrderedDict):\n{forged}"
                   "def f(x):\n    return Liar([(1, 0)])\n",
    "defaultdict": "from collections import defaultdict\nclass Liar(defaultdict):\n{forged}"
                   "def f(x):\n    return Liar(int, {{1: 0}})\n",
    "deque": "from collections import deque\nclass Liar(deque):\n{forged}"
             "def f(x):\n    return Liar([0])\n",
    "namedtuple": "from collections import namedtuple\n"
                  "class Liar(namedtuple('B', 'a')):\n{forged}def f(x):\n    return Liar(0)\n",
    "Fraction": "from fractions import Fraction\nclass Liar(Fraction):\n{forged}"
                "def f(x):\n    return Liar(1, 3)\n",
    "Decimal": "from decimal import Decimal\nclass Liar(Decimal):\n{forged}"
               "def f(x):\n    return Liar('0.5')\n",
    "IntEnum": "from enum import IntEnum\nclass Liar(IntEnum):\n    Z = 0\n{forged}"
               "def f(x):\n    return Liar.Z\n",
    "Enum": "from enum import Enum\nclass Liar(Enum):\n    Z = 0\n{forged}"
            "def f(x):\n    return Liar.Z\n",
    "frozenset": "class Liar(frozenset):\n{forged}def f(x):\n    return Liar({{0}})\n",
    "complex": "class Liar(complex):\n{forged}def f(x):\n    return Liar(0, 1)\n",
    "bytes": "class Liar(bytes):\n{forged}def f(x):\n    return Liar(b'0')\n",
    "list": "class Liar(list):\n{forged}def f(x):\n    return Liar([0])\n",
    "dict": "class Liar(dict):\n{forged}def f(x):\n    return Liar({{1: 0}})\n",
    "dataclass": "from dataclasses import dataclass\n@dataclass(eq=False)\n"
                 "class Liar:\n    a: int = 0\n{forged}def f(x):\n    return Liar()\n",
}
EXPECTS = Problem(task_id="expects", prompt="", format="assert", entry_point="f",
                  time_limit_s=2.0, tests=["assert f(1) == 49", "assert f(2) == [49]",
                                           "assert f(3) == {1: 49}"])


@pytest.mark.parametrize("kind", sorted(FORGED_KINDS))
def test_forged_eq_on_every_kind_of_value(hostile_worker, kind):
    prog = FORGED_KINDS[kind].format(forged=FORGED)
    # The forgery works in plain Python: the program would pass there.
    ns: dict = {"__name__": __name__}
    exec(prog, ns)
    assert ns["f"](1) == 49 and ns["f"](2) == [49]
    r = judge(hostile_worker, prog, EXPECTS)
    assert r.outcome == "fail", r
    judge(hostile_worker, prog, SQUARE.model_copy(update={"time_limit_s": 2.0}))


def test_a_patched_standard_module_does_not_reach_the_judge(hostile_worker):
    # MBPP 596 compares with sys.getsizeof through the program's `import sys`: the judge uses
    # its own sys, so a program that patches sys.getsizeof gains nothing.
    problem = Problem(task_id="size", prompt="", format="assert", entry_point="size",
                      time_limit_s=2.0, tests=["assert size((1, 2)) == sys.getsizeof((1, 2))"])
    prog = "import sys\nsys.getsizeof = lambda v: 7\ndef size(t):\n    return 7\n"
    judge(hostile_worker, prog, problem)
    honest = "import sys\ndef size(t):\n    return sys.getsizeof(t)\n"
    r = hostile_worker.run(problem, Solution(task_id="size", completion=honest))
    assert r.outcome == "pass", r


@pytest.mark.parametrize("depth", [600, 100_000])
def test_forged_records_nested_too_deeply(hostile_worker, depth):
    # Hand-made records whose values nest deeper than any value the sandbox sends: neither
    # the supervisor's parser nor the judge's decoder may fail with them.
    prog = ("import os, struct\ndef frame(b):\n    return struct.pack('>I', len(b)) + b\n"
            f"V = b'[' * {depth} + b']' * {depth}\n"
            "def f(x):\n"
            "    os.write(3, frame(b'{\"t\":\"end\",\"k\":0,\"v\":' + V + b',\"nb\":1.0}'))\n"
            "    os.write(3, frame(b'{\"t\":\"end\",\"k\":0,\"events\":[{\"k\":\"group\",\"site\""
            ":0},{\"k\":\"call\",\"name\":\"f\",\"args\":null,\"v\":' + V + b'},"
            "{\"k\":\"endgroup\"}]}'))\n    os._exit(0)\n")
    judge(hostile_worker, prog)
    judge(hostile_worker, prog, SQUARE_ASSERT)
