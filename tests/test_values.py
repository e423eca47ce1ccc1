"""Values crossing from the sandbox to the judge (executor.serialize, executor.values), the
judge's replay of assert tests, built-ins a program redefines, and time limits from measured
references: pure logic, no sandbox (a few milliseconds in all)."""

from __future__ import annotations

import collections
import dataclasses
import enum
import fractions
import decimal
import io
import math

import pytest

from executor import serialize
from executor.judge import judge_assert_test, judge_program, judge_setup_namespace
from executor.messages import RunObservation
from core.records import Problem
from executor.testcode import plan_assert_tests
from executor.values import EnumMember, Opaque, ProgramObject, Unjudgeable
from problems import time_limits


def cross(value):
    """What the judge rebuilds from `value` (JSON in between, as on the record channel)."""
    return serialize.loads(serialize.dumps(value))


# -- standard containers and records: rebuilt as the same type, compared as Python does -------
Point = collections.namedtuple("Point", "x y")


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


class Size(enum.IntEnum):
    SMALL = 1


@pytest.mark.parametrize("value", [
    collections.Counter("abracadabra"),
    collections.OrderedDict([(2, "b"), (1, "a")]),
    collections.defaultdict(list, {"k": [1, 2]}),
    collections.deque([1, 2, 3], maxlen=5),
    Point(1, 2),
    fractions.Fraction(3, 4),
    decimal.Decimal("1.10"),
    2 - 3j,
    b"\x00bytes",
    bytearray(b"ba"),
    frozenset({1, "a", (2, 3)}),
    range(1, 10, 3),
    {"a": 1, "b": 2}.keys(),
    {"a": 1, "b": 2}.items(),
    {"nested": [(1, 2.5), {3}, None, float("inf"), 10 ** 40]},
])
def test_standard_values_cross_as_themselves(value):
    got = cross(value)
    assert type(got) is type(value) or isinstance(value, tuple)  # namedtuple: the judge's own
    assert got == value
    if isinstance(value, collections.deque):
        assert got.maxlen == 5
    if isinstance(value, collections.defaultdict):
        assert got["missing"] == []  # the factory crossed too


def test_comparisons_follow_python():
    assert cross(collections.Counter(a=1)) == {"a": 1}  # a Counter equals a dict
    assert cross(collections.deque([1])) != [1]  # a deque never equals a list
    od = cross(collections.OrderedDict([(1, 1), (2, 2)]))
    assert od != collections.OrderedDict([(2, 2), (1, 1)])  # order matters between two
    assert od == {2: 2, 1: 1}  # and not against a dict
    p = cross(Point(1, 2))
    assert p == (1, 2) and p.x == 1 and p._fields == ("x", "y")
    assert cross(Size.SMALL) == 1 and type(cross(Size.SMALL)) is int  # as its value
    red = cross(Colour.RED)
    assert type(red) is EnumMember and red == cross(Colour.RED) and red != cross(Colour.BLUE)
    assert (red.name, red.value) == ("RED", 1)


def test_subclasses_cross_as_their_base_without_running_overrides():
    class Liar(collections.Counter):
        def __eq__(self, other):
            return True

        def __iter__(self):
            raise AssertionError("program code ran")

        def items(self):
            raise AssertionError("program code ran")

    class Always(int):
        def __eq__(self, other):
            return True

        def __int__(self):
            return 49

    got = cross(Liar("ab"))
    assert type(got) is collections.Counter and got == {"a": 1, "b": 1} and got != {"a": 2}
    assert type(cross(Always(0))) is int and cross(Always(0)) != 49


# -- program objects: structure, fields, cycles --------------------------------------------------
class Node:
    def __init__(self, data):
        self.data, self.left, self.right = data, None, None

    def height(self):  # a method: the judge never runs it
        return 1


@dataclasses.dataclass
class Pair:
    a: int
    b: int


def test_program_objects_compare_structurally():
    a, b = Node(1), Node(1)
    a.left, b.left = Node(2), Node(2)
    ga, gb = cross(a), cross(b)
    assert type(ga) is ProgramObject and ga == gb  # Python would compare identities here
    b.left.data = 3
    assert ga != cross(b)
    assert ga.left.data == 2 and ga.right is None  # fields read as attributes
    assert cross(Pair(1, 2)) == cross(Pair(1, 2)) != cross(Pair(2, 1))
    assert cross(Pair(1, 2)) != {"a": 1, "b": 2}  # a class name is part of the structure
    with pytest.raises(Unjudgeable, match="Node.height"):
        ga.height()
    with pytest.raises(AttributeError):
        ga.colour  # neither a field nor defined by the class: the program's own error
    with pytest.raises(Unjudgeable, match="__repr__"):
        str(ga)


def test_cycles_and_shared_objects_keep_their_shape():
    a = Node(1)
    a.left = Node(2)
    a.left.right = a  # a cycle
    a.right = a.left  # and sharing
    got = cross(a)
    assert got.left.right is got and got.right is got.left
    assert got == cross(a)
    b = Node(1)
    b.left = Node(2)
    b.left.right = b
    b.right = Node(3)
    assert got != cross(b)
    # The judge re-encodes its stand-ins exactly as the sandbox encoded the real objects (so
    # recorded calls with program objects as arguments are matched).
    assert serialize.encode(got) == serialize.encode(a)


def test_sandbox_side_decoding_gives_back_the_real_objects():
    a = Node(1)
    real: list = []
    enc = serialize.encode([a, {"k": a}, math], real)
    back = serialize.decode(enc, real)
    assert back[0] is a and back[1]["k"] is a and back[2] is math


def test_values_without_structure_are_opaque():
    assert cross(math) is math  # the judge's own standard-library module
    f = cross(len)
    assert type(f) is Opaque and f == cross(len) and f != cross(max) and f != 0
    assert bool(f) is True
    for use in (lambda: f(1), lambda: f.__name__, lambda: str(f), lambda: int(f),
                lambda: list(f), lambda: f + 1):
        with pytest.raises(Unjudgeable):
            use()
    buffer = cross(io.StringIO("x"))
    assert type(buffer) is Opaque
    with pytest.raises(Unjudgeable, match="StringIO"):
        bool(buffer)


def _at_depth(frames: int, fn):
    """fn() called `frames` Python frames down (the judge runs well inside a call stack)."""
    return fn() if frames == 0 else _at_depth(frames - 1, fn)


def test_the_deepest_values_that_cross_are_judged():
    head = None
    for i in range(199):  # a linked list of 199 program objects; dicts and lists as deep
        node = Node(i)
        node.right = head
        head = node
    nest: object = 0
    for i in range(199):
        nest = ([nest], {"k": nest}, (nest,))[i % 3]
    for value in (head, nest):
        a, b = _at_depth(60, lambda: cross(value)), _at_depth(60, lambda: cross(value))
        assert _at_depth(60, lambda: a == b)
        assert serialize.encode(a) == serialize.encode(value)


def test_values_too_large_or_deep_do_not_cross():
    with pytest.raises(serialize.Unserialisable, match="items"):
        serialize.encode([0] * 1_000_001)
    with pytest.raises(ValueError, match="deep"):  # a forged record deeper than any value
        serialize.loads("[" * 5000 + "]" * 5000)
    for forged in ({"$fr": [1, 0]}, {"$dec": "x"}, {"$s": [[1]]}, {"$obj": [0, "A"]},
                   {"$r": [0, 1, 0]}, {"$q": 1}):
        with pytest.raises(ValueError):
            serialize.decode(forged)
    nest: list = []
    for _ in range(600):
        nest = [nest]
    with pytest.raises(serialize.Unserialisable, match="deep"):
        serialize.encode(nest)
    loop: list = []
    loop.append(loop)
    with pytest.raises(serialize.Unserialisable):
        serialize.encode(loop)


# -- the judge's replay ----------------------------------------------------------------------
def _call(name, args, value, **extra):
    return {"k": "call", "name": name, "args": serialize.encode([args, {}]),
            "v": serialize.encode(value), **extra}


def test_setup_calls_into_the_program_are_replayed():
    # MBPP 927: the setup builds a tree of the program's Nodes, the test passes it back.
    setup = "root = Node(1)\nroot.left = Node(2)\n"
    plan = plan_assert_tests(setup, ["assert max_height(root) == 2"])
    n1, n2 = Node(1), Node(2)
    n1.left = n2
    setup_events = [_call("Node", [1], Node(1)), _call("Node", [2], Node(2))]
    ns, (status, _) = judge_setup_namespace(plan, setup_events)
    assert status == "pass" and ns["root"].left.data == 2
    events = [{"k": "group", "site": 0}, _call("max_height", [n1], 2), {"k": "endgroup"}]
    assert judge_assert_test(plan, ns, 0, events) == ("pass", None)
    wrong_tree = [{"k": "group", "site": 0}, _call("max_height", [Node(1)], 2),
                  {"k": "endgroup"}]
    ns, _ = judge_setup_namespace(plan, setup_events)
    assert judge_assert_test(plan, ns, 0, wrong_tree)[0] == "fail"  # not the call it made


def _observed(tests: list[dict]) -> RunObservation:
    """The fork-server's answer with these per-test observations (as they travel)."""
    return RunObservation.from_wire({"tests": tests})


def test_unjudgeable_is_a_failure_not_the_programs_error():
    tests = ["assert f(1) == 1", "assert f(2).height() == 1", "assert f(3).colour == 1"]
    plan = plan_assert_tests(None, tests)
    obs = [{"status": "ok", "events": [{"k": "group", "site": k}, _call("f", [k + 1], value),
                                       {"k": "endgroup"}]}
           for k, value in enumerate([1, Node(2), Node(3)])]
    two = Problem(task_id="t", prompt="", format="assert", entry_point="f", tests=tests[:2])
    r = judge_program(two, _observed(obs[:2]), plan)
    assert (r.outcome, r.tests, r.error_type) == ("fail", ["pass", "unjudgeable"],
                                                  "Unjudgeable")
    assert "Node.height" in r.error_message and r.error_line is None
    # A field the program never set is the program's error, as in the benchmark's harness.
    three = two.model_copy(update={"tests": tests})
    r = judge_program(three, _observed(obs), plan)
    assert (r.outcome, r.tests, r.error_type) == (
        "runtime_error", ["pass", "unjudgeable", "error"], "AttributeError")


def test_a_redefined_builtin_is_the_programs():
    # MBPP 126 defines its own sum(a, b); the test's sum is the program's.
    plan = plan_assert_tests(None, ["assert sum(10, 15) == 6", "assert len(f()) == 1"])
    assert plan.builtin_reads == ("len", "sum")
    assert plan.shadowed_by("def sum(a,b):\n    return a\n") == {"sum"}
    assert plan.shadowed_by("x = sum([1, 2])\nsum = 3\n") == {"sum"}
    assert plan.shadowed_by("def f():\n    return sum([1])\n") == frozenset()
    assert plan.shadowed_by("def f():\n    def sum(a):\n        pass\n") == frozenset()
    shadowed = plan_assert_tests(None, ["assert sum(10, 15) == 6"], frozenset({"sum"}))
    assert "sum" in shadowed.program_names and "sum" not in plan.program_names


# -- time limits ------------------------------------------------------------------------------
def test_time_limits_from_measured_references():
    assert time_limits.limit_from(0.01) == time_limits.FLOOR_S
    assert time_limits.limit_from(2.31) == 12.0  # 5 x 2.31 = 11.55, rounded up to 0.5 s
    assert time_limits.limit_from(100.0) == time_limits.CAP_S
    assert time_limits.dataset_limit({"seconds": 2, "nanos": 500_000_000}) == 2.5
    assert time_limits.dataset_limit("3 seconds") == 3.0
    assert time_limits.dataset_limit(1) == 1.0
    for bad in (None, 0, -1, "", "soon", True, float("nan")):
        assert time_limits.dataset_limit(bad) is None


# -- APPS's top-level `return` -----------------------------------------------------------------
def test_a_top_level_return_ends_a_stdio_program_as_in_apps():
    from executor.programtext import compile_program

    prog = "import sys\nn = 1\ndef g():\n    global n\n    n += 1\ng()\nif n:\n    print(n)\n" \
           "    return\nprint('never')\n"
    code, err = compile_program(prog, "stdio")
    assert err is None
    out: list = []
    exec(code, {"print": out.append, "__name__": "__main__"})
    assert out == [2]
    _, err = compile_program(prog, "call")  # only standard-input programs
    assert err["type"] == "SyntaxError" and err["line"] == 9
