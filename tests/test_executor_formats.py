"""The three problem formats, judged for real in the sandbox (one shared worker)."""

from executor.judge import call_matches, stdout_matches
from core.records import Problem, Solution


def run(worker, problem, program):
    return worker.run(problem, Solution(task_id=problem.task_id, completion=program))


STDIO = Problem(task_id="stdio-sum", prompt="sum", format="stdio", tests=[
    {"input": "1 2\n", "output": "3\n"},
    {"input": "5 5\n", "output": "10"},
    {"input": "0.1 0.2\n", "output": "0.3\n"},
])


def test_stdio_pass_with_float_tolerance_and_trailing_space(worker):
    prog = "a, b = map(float, input().split())\ns = a + b\nprint(int(s) if s == int(s) else s, ' ')\n"
    r = run(worker, STDIO, prog)
    assert r.outcome == "pass", r
    assert r.tests == ["pass"] * 3 and r.passed == 3 == r.total


def test_stdio_wrong_answer_is_fail_with_partial_count(worker):
    r = run(worker, STDIO, "a, b = input().split()\nprint(int(float(a)) + int(float(b)))\n")
    assert r.outcome == "fail"
    assert r.tests == ["pass", "pass", "fail"]


def test_stdio_sys_exit_after_printing_is_a_normal_end(worker):
    r = run(worker, STDIO, "import sys\na, b = map(float, input().split())\nprint(f'{a+b:g}')\nsys.exit(0)\n")
    assert r.outcome == "pass"


def test_stdout_comparison_rules():
    assert stdout_matches("1 2  \n3\n\n", "1 2\n3")
    assert stdout_matches("0.3333333\n", "0.33333333\n")
    assert not stdout_matches("1 2\n", "1 2\n3\n")
    assert not stdout_matches("a b\n", "a c\n")
    assert not stdout_matches("1.1\n", "1.2\n")


CALL = Problem(task_id="call-pairs", prompt="pairs", format="call", fn_name="pairs", tests=[
    {"input": [[1, 2, 3]], "output": [[1, 2], [2, 3]]},
    {"input": [[]], "output": []},
    {"input": [[5]], "output": [[]]},  # APPS wraps some outputs in a one-element list
])


def test_call_tuples_equal_lists(worker):
    prog = "def pairs(xs):\n    return [(a, b) for a, b in zip(xs, xs[1:])]\n"
    r = run(worker, CALL, prog)
    assert r.outcome == "pass", r


def test_call_solution_class_method(worker):
    prog = ("class Solution:\n    def pairs(self, xs: List[int]) -> List[List[int]]:\n"
            "        return [[a, b] for a, b in zip(xs, xs[1:])]\n")
    assert run(worker, CALL, prog).outcome == "pass"


def test_call_missing_function_is_runtime_error(worker):
    r = run(worker, CALL, "def other(xs):\n    return xs\n")
    assert r.outcome == "runtime_error" and r.error_type == "NameError"


def test_call_matching_rules():
    assert call_matches((1, [2, 3]), [1, (2, 3)])
    assert call_matches(False, [False])
    assert call_matches(0.1 + 0.2, 0.3)
    assert not call_matches([1], [[2]])
    assert not call_matches("1", 1)


ASSERT = Problem(task_id="assert-add", prompt="add", format="assert", entry_point="add",
                 setup="import math\n", tests=[
                     "assert candidate(1, 2) == 3",
                     "assert add(-1, 1) == 0",
                     "assert math.isclose(add(0.1, 0.2), 0.3)",
                     "for i in range(5):\n    assert add(i, i) == 2 * i",
                 ])


def test_assert_pass_and_each_assert_is_one_test(worker):
    r = run(worker, ASSERT, "def add(a, b):\n    return a + b\n")
    assert r.outcome == "pass" and r.total == 4


def test_assert_partial_credit(worker):
    r = run(worker, ASSERT, "def add(a, b):\n    return a + b if a >= 0 else 99\n")
    assert r.outcome == "fail" and r.tests == ["pass", "fail", "pass", "pass"]


def test_assert_expected_values_never_reach_the_sandbox(worker):
    # The program hunts for the expected literal in every frame and code object it can see.
    prog = (
        "import sys, gc\n"
        "def add(a, b):\n"
        "    f = sys._getframe(1)\n"
        "    seen = []\n"
        "    while f is not None:\n"
        "        seen += list(f.f_code.co_consts)\n"
        "        f = f.f_back\n"
        "    for o in gc.get_objects():\n"
        "        if type(o).__name__ == 'code':\n"
        "            seen += list(o.co_consts)\n"
        "    return 918273645 if 918273645 in seen else -1\n"
    )
    p = Problem(task_id="leak", prompt="", format="assert", entry_point="add",
                tests=["assert candidate(40, 2) == 918273645"])
    assert run(worker, p, prog).outcome == "fail"


def test_assert_in_place_mutation_is_mirrored(worker):
    p = Problem(task_id="inplace", prompt="", format="assert", entry_point="srt",
                tests=["xs = [3, 1, 2]\ncandidate(xs)\nassert xs == [1, 2, 3]"])
    assert run(worker, p, "def srt(xs):\n    xs.sort()\n").outcome == "pass"
    assert run(worker, p, "def srt(xs):\n    return sorted(xs)\n").outcome == "fail"


def test_assert_random_inputs_are_the_same_on_both_sides(worker):
    p = Problem(task_id="rnd", prompt="", format="assert", entry_point="add", tests=[
        "import random\nfor _ in range(20):\n    x, y = random.randint(0, 99), random.randint(0, 99)\n"
        "    assert candidate(x, y) == x + y"])
    # The program draws from the global generator; the test's draws must not shift.
    prog = "import random\ndef add(a, b):\n    random.random()\n    return a + b\n"
    assert run(worker, p, prog).outcome == "pass"


def test_a_timed_out_test_does_not_cost_the_others(worker):
    p = Problem(task_id="slow", prompt="", format="call", fn_name="f", time_limit_s=0.5, tests=[
        {"input": [1], "output": 1}, {"input": [2], "output": 2}, {"input": [3], "output": 3}])
    prog = "def f(x):\n    while x == 2:\n        x = x * 1\n    return x\n"
    r = run(worker, p, prog)
    assert r.tests == ["pass", "timeout", "pass"]
    assert r.outcome == "timeout" and r.error_line in (2, 3) and r.passed == 2


def test_each_test_has_its_own_time_limit(worker):
    # Four tests that wait 0.3 s each under a 0.3 s limit (waiting uses no CPU time; the
    # wall-clock limit is 0.3 s x executor.wall_limit_factor (3) = 0.9 s): together they take
    # longer than one limit, and all pass; the limits restart when each test begins, in both
    # formats.
    slow = "import time\ndef f(x):\n    time.sleep(0.3)\n    return x\n"
    call = Problem(task_id="each", prompt="", format="call", fn_name="f", time_limit_s=0.3,
                   tests=[{"input": [i], "output": i} for i in range(4)])
    assert run(worker, call, slow).tests == ["pass"] * 4
    asserts = Problem(task_id="each-a", prompt="", format="assert", entry_point="f",
                      time_limit_s=0.3, tests=[f"assert f({i}) == {i}" for i in range(4)])
    assert run(worker, asserts, slow).tests == ["pass"] * 4
    # ...and a test that overruns is stopped at its own limit (0.9 s of waiting), not the
    # program's (30 s).
    slower = "import time\ndef f(x):\n    time.sleep(0.3 if x != 2 else 20)\n    return x\n"
    r = run(worker, asserts, slower)
    assert r.tests == ["pass", "pass", "timeout", "pass"] and r.duration_s < 5


def test_time_limit_counts_cpu_time_and_a_wall_clock_limit_stops_waiting(worker):
    # Waiting 0.5 s under a 0.3 s limit uses no CPU time (as waiting for the CPU of a busy
    # machine does not), and passes; computing for 0.5 s of CPU time does not. (Waiting too
    # long: test_each_test_has_its_own_time_limit.)
    wait = "import time\ndef f(x):\n    time.sleep(0.5)\n    return x\n"
    spin = ("import time\ndef f(x):\n    t = time.process_time()\n"
            "    while time.process_time() - t < 0.5:\n        pass\n    return x\n")
    call = Problem(task_id="cpu", prompt="", format="call", fn_name="f", time_limit_s=0.3,
                   tests=[{"input": [1], "output": 1}])
    assert run(worker, call, wait).outcome == "pass"
    r = run(worker, call, spin)
    assert r.outcome == "timeout" and r.error_line in (4, 5)
    stdio = Problem(task_id="cpu-s", prompt="", format="stdio", time_limit_s=0.3,
                    tests=[{"input": "1\n", "output": "1\n"}])
    assert run(worker, stdio, "import time\ntime.sleep(0.5)\nprint(input())\n").outcome == "pass"


def test_assert_tests_with_sets_of_strings_as_arguments(worker):
    # The probe (in the sandbox) and the judge (in the parent) run under different hash
    # seeds, so a set of strings iterates in different orders in the two; the recorded
    # call must still match the replayed one.
    words = ", ".join(repr(f"w{i}") for i in range(40))
    p = Problem(task_id="sets", prompt="", format="assert", entry_point="size",
                tests=[f"assert size({{{words}}}) == 40",
                       f"assert size(frozenset({{{words}}})) == 40",
                       "assert size({b'x', b'y', b'z'}) == 3"])
    r = run(worker, p, "def size(s):\n    return len(s)\n")
    assert r.outcome == "pass", r


def test_dataclass_under_postponed_annotations(worker):
    # dataclasses look the class's module up in sys.modules to read string annotations
    prog = ("from __future__ import annotations\nfrom dataclasses import dataclass\n\n"
            "@dataclass\nclass P:\n    x: int\n    y: int = 0\n\n"
            "def norm1(a, b):\n    return abs(P(a, b).x) + abs(P(a, b).y)\n")
    for fmt, tests in (("assert", ["assert norm1(3, -4) == 7"]),
                       ("call", [{"input": [3, -4], "output": 7}])):
        p = Problem(task_id=f"dc-{fmt}", prompt="", format=fmt, entry_point="norm1",
                    fn_name="norm1", tests=tests)
        r = run(worker, p, prog)
        assert r.outcome == "pass", r
    p = Problem(task_id="dc-stdio", prompt="", format="stdio",
                tests=[{"input": "3 -4\n", "output": "7\n"}])
    r = run(worker, p, prog + "a, b = map(int, input().split())\nprint(norm1(a, b))\n")
    assert r.outcome == "pass", r


def test_assert_test_code_that_does_not_compile_is_reported_as_broken_data(worker):
    # It parses, but `return` outside a function does not compile: the test data is at fault,
    # not the program, and the caller gets a result saying so (not an exception).
    broken = Problem(task_id="broken-tests", prompt="", format="assert", entry_point="f",
                     tests=["return 1", "assert f(1) == 1"])
    r = run(worker, broken, "def f(x):\n    return x\n")
    assert (r.outcome, r.error_type) == ("fail", "TestCodeError")
    assert "test 0 does not compile" in r.error_message


# Standard-library values returned by correct programs, with tests written as the benchmarks
# write them (compared as Python compares them); each program is also checked in plain Python.
STDLIB_VALUES = (
    "from collections import Counter, OrderedDict, defaultdict, deque, namedtuple\n"
    "from dataclasses import dataclass\nfrom fractions import Fraction\n"
    "from decimal import Decimal\nimport enum\n"
    "Point = namedtuple('Point', 'x y')\n"
    "@dataclass\nclass Item:\n    name: str\n    qty: int = 1\n"
    "class Colour(enum.Enum):\n    RED = 1\n"
    "def make(kind):\n"
    "    return {'counter': Counter('abca'), 'ordered': OrderedDict(b=2, a=1),\n"
    "            'grouped': defaultdict(list, {'k': [1]}), 'queue': deque([1, 2], maxlen=3),\n"
    "            'point': Point(1, 2), 'item': Item('x', 2), 'colour': Colour.RED,\n"
    "            'fraction': Fraction(1, 3), 'decimal': Decimal('0.10'), 'complex': 1j,\n"
    "            'bytes': b'ab', 'frozen': frozenset({1, 2}), 'range': range(3),\n"
    "            'gen': (i * i for i in range(3))}[kind]\n")
STDLIB_TESTS = [
    "assert make('counter') == {'a': 2, 'b': 1, 'c': 1}",
    "assert make('counter').most_common(1) == [('a', 2)]",
    "assert make('ordered') == {'a': 1, 'b': 2} and list(make('ordered')) == ['b', 'a']",
    "assert make('grouped') == {'k': [1]} and make('grouped')['new'] == []",
    "assert make('queue') == deque([1, 2]) and make('queue') != [1, 2]",
    "assert make('point') == (1, 2) and make('point').y == 2",
    "assert make('item') == Item('x', 2) and make('item').qty == 2",
    "assert make('colour') == Colour.RED and make('colour').name == 'RED'",
    "assert make('fraction') == Fraction(1, 3) and make('decimal') == Decimal('0.1')",
    "assert make('complex') == 1j and make('bytes') == b'ab' and make('frozen') == {1, 2}",
    "assert make('range') == range(0, 3) and list(make('gen')) == [0, 1, 4]",
]


def test_standard_library_values_and_records_pass(worker):
    p = Problem(task_id="stdlib", prompt="", format="assert", entry_point="make",
                setup="from collections import deque\nfrom fractions import Fraction\n"
                      "from decimal import Decimal\n", tests=STDLIB_TESTS)
    ns: dict = {"__name__": __name__}
    exec(STDLIB_VALUES + p.setup + "\n".join(STDLIB_TESTS), ns)  # MBPP's own harness
    r = run(worker, p, STDLIB_VALUES)
    assert r.outcome == "pass", r
    wrong = STDLIB_VALUES.replace("Counter('abca')", "Counter('abcc')").replace(
        "Item('x', 2)", "Item('x', 3)").replace("maxlen=3", "maxlen=4")
    r = run(worker, p, wrong)
    assert r.tests[:2] == ["fail", "fail"] and r.tests[6] == "fail", r
    call = Problem(task_id="stdlib-call", prompt="", format="call", fn_name="make", tests=[
        {"input": ["counter"], "output": {"a": 2, "b": 1, "c": 1}},
        {"input": ["point"], "output": [1, 2]}, {"input": ["queue"], "output": [1, 2]}])
    # A deque is not a list for Python, nor for APPS's harness: the third test fails.
    assert run(worker, call, STDLIB_VALUES).tests == ["pass", "pass", "fail"]


def test_program_functions_and_iterators_as_arguments(worker):
    # A test may hand the program one of its own functions, or an iterator: the program gets
    # them as they are (an iterator unconsumed), and the replay still matches the calls.
    p = Problem(task_id="args", prompt="", format="assert", entry_point="apply", tests=[
        "assert apply(double, [1, 2]) == [2, 4]",
        "assert total(iter([1, 2, 3])) == 6",
        "assert total(x * x for x in range(4)) == 14",
        "assert apply(lambda v: v + 1, (1,)) == [2]"])
    prog = ("def double(x):\n    return 2 * x\n"
            "def apply(f, xs):\n    return [f(x) for x in xs]\n"
            "def total(it):\n    return sum(it)\n")
    r = run(worker, p, prog)
    assert r.outcome == "pass", r
    r = run(worker, p, prog.replace("sum(it)", "sum(it) + 1"))
    assert r.tests == ["pass", "fail", "fail", "pass"]
