"""`rltf gen-tests`: typed inputs, standalone extraction, drop reasons, dedup, mutants.

Unit tests need no sandbox. Tests marked integration start real fork-servers; the generation
run over the tiny module below is shared by them (one run, about 5 s).
"""

from __future__ import annotations

import ast
import json
import random
import sys
import textwrap

import pytest

from problems.gentests.extract import Candidate, Rejected, dedup_key, scan_module
from problems.gentests.inputs import InputGen, harvest_constants
from problems.gentests.literals import Unliteral, to_literal
from problems.gentests.specs import Spec, Unsupported
from problems.gentests.mutants import mutants
from problems.gentests.selection import Row, choose
from problems.gentests.rows import make_inputs
from problems.gentests.generate import GenSettings, generate


# -- annotations ---------------------------------------------------------------------------
def spec_of(annotation: str, header: str = "") -> Spec:
    """Parse `annotation` as written in a module that starts with `header`."""
    src = f"{header}\ndef f(x: {annotation}) -> int:\n    return 0\n"
    found, items = scan_module(src, "m")
    if isinstance(items[0], Rejected):
        raise Unsupported(items[0].detail)
    return items[0].params[0].spec


@pytest.mark.parametrize("annotation,header,expected", [
    ("int", "", "int"),
    ("float", "", "float"),
    ("str", "", "str"),
    ("bool", "", "bool"),
    ("list[int]", "", "list[int]"),
    ("List[int]", "from typing import List", "list[int]"),
    ("typing.Dict[str, int]", "import typing", "dict[str, int]"),
    ("t.Optional[str]", "import typing as t", "str | None"),
    ("int | None", "", "int | None"),
    ("Union[int, str]", "from typing import Union", "int | str"),
    ("'list[str]'", "", "list[str]"),
    ("Tuple[int, ...]", "from typing import Tuple", "tuple[int, ...]"),
    ("tuple[int, str]", "", "tuple[int, str]"),
    ("Set[int]", "from typing import Set", "set[int]"),
    ("frozenset[float]", "", "frozenset[float]"),
    ("Sequence[str]", "from collections.abc import Sequence", "list[str]"),
    ("Mapping[str, list[int]]", "from typing import Mapping", "dict[str, list[int]]"),
    ("Literal['a', 'b']", "from typing import Literal", "Literal['a', 'b']"),
    ("list", "", "list[int]"),
    ("Pos", "Pos = int", "int"),  # a module-level alias
])
def test_annotations_map_to_specs(annotation, header, expected):
    assert str(spec_of(annotation, header)) == expected


@pytest.mark.parametrize("annotation,header", [
    ("Any", "from typing import Any"),
    ("object", ""),
    ("Callable[[int], int]", "from typing import Callable"),
    ("Thing", "class Thing: pass"),
    ("set[str]", ""),  # a set of strings is ordered by the hash seed: see gentests.specs
    ("dict[list[int], int]", ""),
    ("List[int]", ""),  # List not imported: not typing's
])
def test_unsupported_annotations(annotation, header):
    with pytest.raises(Unsupported):
        spec_of(annotation, header)


def conforms(value, spec: Spec) -> bool:
    k, a = spec.kind, spec.args
    if k in ("int", "float", "str", "bool", "bytes"):
        return type(value).__name__ == k
    if k == "none":
        return value is None
    if k == "literal":
        return value in a
    if k == "union":
        return any(conforms(value, s) for s in a)
    if k == "tuple":
        return type(value) is tuple and len(value) == len(a) and all(map(conforms, value, a))
    if k in ("list", "tuplevar", "set", "frozenset"):
        kind = {"list": list, "tuplevar": tuple, "set": set, "frozenset": frozenset}[k]
        return type(value) is kind and all(conforms(v, a[0]) for v in value)
    if k == "dict":
        return type(value) is dict and all(conforms(x, a[0]) and conforms(y, a[1])
                                           for x, y in value.items())
    return False


@pytest.mark.parametrize("annotation", [
    "int", "float", "str", "bool", "bytes", "list[int]", "dict[str, float]", "tuple[int, str]",
    "tuple[bool, ...]", "set[int]", "frozenset[int]", "int | None", "list[list[str]]",
    "dict[int, tuple[str, int]]"])
def test_generated_values_have_the_annotated_type(annotation):
    spec = spec_of(annotation)
    gen = InputGen(random.Random(0))
    values = gen.edges(spec) + [gen.sample(spec) for _ in range(200)]
    bad = [v for v in values if not conforms(v, spec)]
    assert not bad, bad[:3]


def test_edges_cover_zero_signs_large_and_empty():
    gen = InputGen(random.Random(0))
    ints = gen.edges(Spec("int"))
    assert {0, 1, -1}.issubset(ints) and max(ints) >= 10**6
    assert "" in gen.edges(Spec("str"))
    assert [] in gen.edges(Spec("list", (Spec("int"),)))
    assert {} in gen.edges(Spec("dict", (Spec("str"), Spec("int"))))
    assert None in gen.edges(spec_of("int | None"))


def test_program_constants_seed_the_inputs():
    tree = ast.parse("def f(s: str, n: int) -> int:\n    'doc'\n"
                     "    return 1 if s == 'magic' and n > 41 else 0\n")
    consts = harvest_constants(tree)
    assert "magic" in consts["str"] and "doc" not in consts["str"]
    assert {40, 41, 42}.issubset(consts["int"])  # each side of the boundary
    assert "magic" in InputGen(random.Random(0), consts=consts).edges(Spec("str"))


# -- literals ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    0, -7, 2**80, True, None, 1.5, -0.0, float("inf"), float("-inf"), 1e-300, "a'b\"\n", b"\x00",
    bytearray(b"ab"), 3 + 4j, [1, [2]], (1,), (), {"k": (1, 2)}, {3, 1, 2}, set(),
    frozenset({1}), frozenset(), range(0, 5, 2), {(1, "a"): [None]}])
def test_literals_rebuild_values_exactly(value):
    back = eval(to_literal(value))
    assert type(back) is type(value)
    assert back == value or repr(back) == repr(value)


def test_literals_reject_nan_and_objects():
    for bad in (float("nan"), [1.0, float("nan")], object()):
        with pytest.raises(Unliteral):
            to_literal(bad)
    assert to_literal({"b", "a"}) == "{'a', 'b'}"  # sorted: independent of the hash seed
    assert to_literal({"b": 1, "a": 2}) == "{'b': 1, 'a': 2}"
    assert to_literal({"b": 1, "a": 2}, sort_dicts=True) == "{'a': 2, 'b': 1}"


def test_extraction_does_not_depend_on_the_hash_seed():
    import subprocess

    code = ("import json, sys; from problems.gentests.extract import scan_module; "
            "print(json.dumps([vars(i) for i in scan_module(sys.stdin.read(), 'm')[1]], "
            "default=str))")
    src = MODULE.replace("from . import sibling", "from string import (ascii_letters, digits, "
                         "hexdigits, octdigits, punctuation, whitespace)") + \
        "\n\ndef uses(x: str) -> str:\n    return ascii_letters + digits + hexdigits + " \
        "octdigits + punctuation + whitespace + x\n"
    outs = {subprocess.run([sys.executable, "-c", code], input=src, capture_output=True,
                           text=True, env={"PYTHONHASHSEED": seed}, check=True).stdout
            for seed in ("1", "2", "3")}
    assert len(outs) == 1


# -- inputs are seeded -----------------------------------------------------------------------
SAMPLE = textwrap.dedent('''\
    from typing import Optional


    def f(xs: list[int], name: str, k: Optional[int] = None, *, flag: bool = False) -> int:
        """Add things."""
        return sum(xs) + len(name) + (k or 0) + flag
    ''')


def test_inputs_are_deterministic_for_a_seed_and_vary_with_it():
    _, (cand,) = scan_module(SAMPLE, "m")
    a, b = make_inputs(cand, 0, 20), make_inputs(cand, 0, 20)
    c = make_inputs(cand, 1, 20)
    assert a == b and len(a) == 20
    assert a != c
    assert a[0][0][:2] == [[], ""]  # the first row: every parameter's first edge
    assert all(len(args) <= 3 and set(kw) <= {"flag"} for args, kw in a)
    assert any("flag" in kw for _, kw in a)  # keyword-only, passed by keyword
    assert len({to_literal((tuple(x), y)) for x, y in a}) == 20  # distinct


def test_second_chance_inputs_come_from_tiny_domains():
    _, (cand,) = scan_module(SAMPLE, "m")
    small = make_inputs(cand, 0, 30, small=True)
    assert small != make_inputs(cand, 0, 30)
    assert small[0][0][:2] != [[], ""]  # no edge rows: those ran the first time
    ints = [x for args, _ in small for x in args[0]]
    assert sum(0 <= x <= 4 for x in ints) >= 0.6 * len(ints)  # repeats and equal items
    assert max(len(args[0]) for args, _ in small) > 4  # longer lists than the first time


# -- extraction ----------------------------------------------------------------------------
MODULE = textwrap.dedent('''\
    """A module."""
    import os
    import re
    from collections import Counter, OrderedDict
    from . import sibling

    _WORD = re.compile(r"[a-z]+")
    UNUSED = os.getcwd()


    def _norm(w):
        return w.lower()


    def words(text: str) -> dict[str, int]:
        """Count words."""
        return dict(Counter(_norm(w) for w in _WORD.findall(text.lower())))


    def unrelated(x: int) -> int:
        return sibling.g(x)
    ''')


def test_standalone_solution_has_exactly_what_the_function_needs():
    found, items = scan_module(MODULE, "pkg.mod", is_package=False, allow_bare=True)
    assert found == 3
    cand = next(i for i in items if isinstance(i, Candidate) and i.name == "words")
    assert cand.task_id == "pkg.mod.words" and cand.typed == "annotated"
    sol = cand.solution
    assert "import re" in sol and "from collections import Counter\n" in sol
    assert "OrderedDict" not in sol and "import os" not in sol and "UNUSED" not in sol
    assert "def _norm(w)" in sol and "_WORD = re.compile" in sol
    ns: dict = {}
    exec(sol, ns)
    assert ns["words"]("A b a") == {"a": 2, "b": 1}
    assert cand.prompt == 'def words(text: str) -> dict[str, int]:\n    """Count words."""\n'
    reasons = {i.task_id: (i.reason, i.detail) for i in items if isinstance(i, Rejected)}
    assert reasons == {"pkg.mod.unrelated": ("imports outside the standard library", "pkg")}
    norm = next(i for i in items if isinstance(i, Candidate) and i.name == "_norm")
    assert norm.unknown and norm.typed == "inferred"  # w: left for runtime probing


STRICT = "annotations only: "


@pytest.mark.parametrize("src,reason", [
    (STRICT + "def f(x, y):\n    return x\n", "no annotations"),
    (STRICT + "def f(x: int, y) -> int:\n    return x\n", "partly annotated"),
    (STRICT + "def f(x, n=3):\n    return x\n", "no annotations"),
    (STRICT + "def f(x, n: int = 3):\n    return x\n", "partly annotated"),
    ("from typing import Any\ndef f(x: Any) -> int:\n    return 1\n", "unsupported annotation"),
    ("import functools\n@functools.wraps(len)\ndef f(x: int) -> int:\n    return x\n",
     "decorated"),
    ("async def f(x: int) -> int:\n    return x\n", "async function"),
    ("def f() -> int:\n    return 1\n", "no parameters"),
    ("def f(x: int) -> None:\n    return None\n", "returns None"),
    ("N = 0\ndef f(x: int) -> int:\n    global N\n    N += x\n    return N\n",
     "depends on module state"),
    ("def f(x: int) -> int:\n    return x + UNDEFINED\n", "depends on module state"),
    ("def f(x: int) -> str:\n    return __file__\n", "depends on module state"),
    ("import numpy\ndef f(x: int) -> int:\n    return numpy.abs(x)\n",
     "imports outside the standard library"),
    ("def f(x: int) -> int:\n    return 1\ndef f(x: int) -> int:\n    return 2\n", "redefined"),
])
def test_static_drop_reasons(src, reason):
    strict = src.startswith(STRICT)
    _, items = scan_module(src.removeprefix(STRICT), "m", infer_defaults=not strict)
    assert isinstance(items[0], Rejected) and items[0].reason == reason, items[0]


def test_types_inferred_from_simple_defaults():
    _, (cand,) = scan_module("def f(n=3, s='a', x=1.5, b=True):\n    return s * n\n", "m")
    assert cand.typed == "inferred"
    assert [str(p.spec) for p in cand.params] == ["int", "str", "float", "bool"]
    _, (rej,) = scan_module("def f(n=3):\n    return n\n", "m", infer_defaults=False)
    assert rej.reason == "no annotations"


def test_future_annotations_need_no_imports_for_types():
    src = ("from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
           "if TYPE_CHECKING:\n    from typing import List\n"
           "def f(xs: List[int]) -> int:\n    return len(xs)\n")
    _, items = scan_module(src, "m")
    cand = items[-1]
    assert isinstance(cand, Candidate), cand
    assert cand.solution.startswith("from __future__ import annotations\n")
    assert "TYPE_CHECKING" not in cand.solution


def test_dedup_key_ignores_names_docstrings_and_constants():
    def key(src: str) -> str:
        return dedup_key(ast.parse(src).body[0])

    a = key("def add(a: int, b: int) -> int:\n    '''Add.'''\n    t = a + b\n    return t + 1\n")
    b = key("def plus(x, y):\n    s = x + y\n    return s + 2\n")
    c = key("def sub(a: int, b: int) -> int:\n    t = a - b\n    return t + 1\n")
    assert a == b and a != c


# -- selection and mutants --------------------------------------------------------------------
def test_choose_prefers_new_lines_and_new_outputs():
    from problems.gentests.probe import Observation

    def row(lines, out):
        return Row([], {}, Observation("ok", out, lines=frozenset(lines)), f"assert c() == {out}")

    rows = [row({1, 2}, 0), row({1, 2}, 0), row({1, 3}, 1), row({1, 2}, 2)]
    assert [r.obs.value for r in choose(rows, 3)] == [0, 1, 2]
    assert len(choose(rows, 10)) == 4


def test_mutants_one_change_each():
    src = "import math\n\n\ndef f(a, b):\n    if a < b and a > 0:\n        return a + 1\n" \
          "    return b\n"
    ops = [m.op for m in mutants(src, "f")]
    assert sorted(set(ops)) == ["and_or", "arith", "boundary", "compare", "drop_branch",
                                "off_by_one", "return_none"]
    for m in mutants(src, "f"):
        assert m.program.startswith("import math\n") and m.program != src
        compile(m.program, "<mutant>", "exec")
    assert "a - 1" in next(m.program for m in mutants(src, "f") if m.op == "arith")
    assert len(mutants(src, "f", limit=2, rng=random.Random(0))) == 2
    assert len({m.id for m in mutants(src, "f")}) == len(ops)  # ids name one mutant each


# -- with the sandbox ----------------------------------------------------------------------
TINY = textwrap.dedent('''\
    import math
    import random
    import sys
    import winreg


    def clamp(x: int, lo: int = 0, hi: int = 10) -> int:
        """Clamp x into [lo, hi]."""
        if x < lo:
            return lo
        if x > hi:
            return hi
        return x


    def clamp_copy(y: int, a: int = 1, b: int = 99) -> int:
        if y < a:
            return a
        if y > b:
            return b
        return y


    def root(x: float) -> float:
        return math.sqrt(x)


    def countdown(n: int):
        yield from range(min(abs(n), 4), 0, -1)


    def noisy(x: int) -> int:
        print(x)
        return x


    def writes(x: int) -> int:
        with open("out.txt", "w") as fh:
            fh.write(str(x))
        return x


    def jitter(x: float) -> float:
        return x + random.random()


    def spins(x: int) -> int:
        while True:
            pass


    def refuses(x: str) -> str:
        raise ValueError(x)


    def handle(x: int) -> object:
        return object()


    def same(x: int) -> int:
        return 7


    def registry(x: int) -> int:
        return winreg.HKEY_CURRENT_USER + x


    def caller(x: int) -> str:
        return sys._getframe(1).f_code.co_name + str(x)


    def huge(x: int) -> str:
        return "ab" * 800 + str(x)
    ''')
EXPECTED_DROPS = {
    "tiny.clamp_copy": "duplicate",
    "tiny.noisy": "side effects",
    "tiny.writes": "side effects",
    "tiny.jitter": "nondeterministic",
    "tiny.spins": "timeout",
    "tiny.refuses": "all inputs raise",
    "tiny.handle": "unserialisable output",
    "tiny.same": "constant output",
    "tiny.registry": "imports fail",
    "tiny.caller": "reference fails generated tests",
    "tiny.huge": "outputs too long",
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    assert "winreg" in sys.stdlib_module_names  # and it does not import on Linux
    path = tmp_path_factory.mktemp("src") / "tiny.py"
    path.write_text(TINY)
    st = GenSettings(seed=0, per_function=6, pool_factor=2, allow_bare=True)
    problems, report = generate([str(path)], st)
    return {p.task_id: p for p in problems}, report


@pytest.mark.integration
def test_each_drop_reason(generated):
    problems, report = generated
    drops = {d["task_id"]: d["reason"] for d in report.dropped_functions}
    assert drops == EXPECTED_DROPS, drops
    assert sorted(problems) == ["tiny.clamp", "tiny.countdown", "tiny.root"]
    assert report.functions_found == len(problems) + sum(report.dropped.values()) == 14


@pytest.mark.integration
def test_kept_problem_shape_and_reference_passes(generated, worker):
    from core.records import Solution

    problems, _ = generated
    p = problems["tiny.clamp"]
    assert p.format == "assert" and p.entry_point == "clamp" and p.starter_code == p.prompt
    assert p.prompt.startswith("def clamp(x: int, lo: int = 0, hi: int = 10) -> int:\n")
    assert 3 <= len(p.tests) <= 6
    assert all(t.startswith("assert candidate(") for t in p.tests)
    assert "assert list(candidate(" in problems["tiny.countdown"].tests[0]
    assert "import math" in problems["tiny.root"].solutions[0]
    for prob in problems.values():
        r = worker.run(prob, Solution(task_id=prob.task_id, completion=prob.solutions[0]))
        assert r.outcome == "pass", (prob.task_id, r)


@pytest.mark.integration
def test_generation_is_reproducible(generated, tmp_path):
    problems, _ = generated
    path = tmp_path / "tiny.py"
    path.write_text(TINY.split("\n\n\ndef noisy")[0] + "\n")
    again, _ = generate([str(path)], GenSettings(seed=0, per_function=6, pool_factor=2,
                                                  allow_bare=True))
    assert {p.task_id: p.tests for p in again} == {k: v.tests for k, v in problems.items()}


@pytest.mark.integration
def test_a_mutant_is_killed(generated, worker):
    from core.records import Solution

    problems, _ = generated
    p = problems["tiny.clamp"]
    progs = {m.op: m.program for m in mutants(p.solutions[0], "clamp")}  # last of each op
    for op in ("compare", "return_none"):
        r = worker.run(p, Solution(task_id=p.task_id, completion=progs[op]))
        assert r.outcome != "pass", op


@pytest.mark.integration
def test_record_outputs_values_errors_and_effects(worker):
    from problems.gentests.probe import record_outputs

    src = "def f(x, y=1):\n    if x < 0:\n        raise ValueError(x)\n    return [x, y]\n" \
          "def g(n):\n    print(n)\n    return n\n"
    obs = record_outputs(worker, src, "f", [((1,), {}), ((2,), {"y": 5}), ((-1,), {})],
                         trace=True)
    assert [o.status for o in obs] == ["ok", "ok", "error"]
    assert obs[0].value == [1, 1] and obs[1].value == [2, 5]
    assert obs[2].error["type"] == "ValueError"
    assert obs[0].lines and 3 not in obs[0].lines  # the raise line did not run
    (o,) = record_outputs(worker, src, "g", [((3,), {})])
    assert o.ok and o.effects == ("print",)
    (o,) = record_outputs(worker, "import no_such_module\n" + src, "f", [((1,), {})])
    assert o.status == "load_error"


@pytest.mark.integration
def test_cli_writes_problems_report_and_solutions_that_rltf_exec_passes(tmp_path):
    from cluster.cli import main

    src = tmp_path / "one.py"
    src.write_text(TINY.split("\n\n\ndef clamp_copy")[0] + "\n")
    out, rep, sol, res = (tmp_path / n for n in ("p.jsonl", "r.json", "s.jsonl", "x.jsonl"))
    assert main(["gen-tests", "--source", str(src), "--out", str(out), "--report", str(rep),
                 "--solutions-out", str(sol), "--per-function", "4", "--seed", "3"]) == 0
    report = json.loads(rep.read_text())
    assert report["functions_found"] == 1 and report["kept"] == 1
    assert report["reference_check"] == {"programs": 1, "passed": 1, "pass_rate_before_drop": 1.0}
    assert main(["exec", "--problems", str(out), "--solutions", str(sol), "--out", str(res),
                 "--quiet"]) == 0
    assert json.loads(res.read_text())["outcome"] == "pass"
