"""Types of unannotated parameters (`rltf gen-tests`): each source on a small hand-written
module, the order in which sources are tried, and the names runtime probing starts from.

Pure logic, no sandbox (about 1 s); probing itself runs in tests/test_gen_mutation.py.
"""

from __future__ import annotations

import textwrap

import pytest

from problems.gentests.callsites import CallIndex
from problems.gentests.docstrings import examples, param_type_phrases
from problems.gentests.extract import Candidate, Rejected, scan_module
from problems.gentests.specs import Spec
from problems.gentests.probe_types import _key, _score, plausible
from problems.gentests.typeinfer import join, parse_type_phrase, spec_of_value, spec_of_values


def one(src: str, module: str = "m", calls: CallIndex | None = None, **kw) -> Candidate:
    _, items = scan_module(textwrap.dedent(src), module, calls=calls, **kw)
    (item,) = items
    return item


def types(cand: Candidate) -> dict[str, tuple[str, str]]:
    return {p.name: (str(p.spec) if p.spec else None, p.source) for p in cand.params}


# -- docstrings ------------------------------------------------------------------------------
RST = '''
def f(xs, n, label=None):
    """Repeat.

    :param xs: the items
    :type xs: list of int
    :param int n: how many times
    :param label: a name
    :type label: str, optional
    """
    return xs * n
'''
GOOGLE = '''
def f(xs, n, label=None):
    """Repeat.

    Args:
        xs (Sequence[float]): the items,
            on two lines.
        n (int): how many times
        label (str, optional): a name

    Returns:
        list: the items, repeated
    """
    return xs * n
'''
NUMPY = '''
def f(xs, n, label=None):
    """Repeat.

    Parameters
    ----------
    xs : list of str
        The items.
    n : int
    label : str or None, optional

    Returns
    -------
    list
    """
    return xs * n
'''


@pytest.mark.parametrize("src,xs", [(RST, "list[int]"), (GOOGLE, "list[float]"),
                                    (NUMPY, "list[str]")], ids=["rest", "google", "numpy"])
def test_docstring_styles(src, xs):
    cand = one(src)
    assert types(cand) == {"xs": (xs, "docstring"), "n": ("int", "docstring"),
                           "label": ("str | None", "docstring")}  # None default: optional
    assert cand.typed == "inferred" and cand.has_docstring


def test_epydoc_and_untyped_items():
    doc = "Do.\n\n@type a: int\n@param a: a number\n\nArgs:\n    b: no type given\n"
    assert param_type_phrases(doc) == {"a": "int"}


@pytest.mark.parametrize("phrase,expected", [
    ("int", "int"), ("integer", "int"), ("non-negative int", "int"), ("str", "str"),
    ("string", "str"), ("float", "float"), ("bool", "bool"), ("bytes", "bytes"),
    ("list of int", "list[int]"), ("list of strings", "list[str]"), ("int list", "list[int]"),
    ("sequence of floats", "list[float]"), ("iterable", "list[int]"),
    ("list of list of int", "list[list[int]]"), ("tuple of int", "tuple[int, ...]"),
    ("dict mapping str to int", "dict[str, int]"), ("dict of str to float", "dict[str, float]"),
    ("int or None", "int | None"), ("int, optional", "int"), ("bool, default False", "bool"),
    ("number", "int | float"), ("str | bytes", "str | bytes"), ("List[int]", "list[int]"),
    ("Optional[str]", "str | None"), ("list[tuple[int, str]]", "list[tuple[int, str]]"),
    (":class:`int`", "int"),
])
def test_type_phrases(phrase, expected):
    assert str(parse_type_phrase(phrase)) == expected


@pytest.mark.parametrize("phrase", ["callable", "Fraction", "file-like object", "any",
                                    "set of str", "object", ""])
def test_phrases_that_say_nothing_usable(phrase):
    assert parse_type_phrase(phrase) is None  # the next source is tried


# -- doctests ---------------------------------------------------------------------------------
DOCTESTS = '''
def scale(xs, k):
    """Multiply.

    >>> scale([1, 2], 3)
    [3, 6]
    >>> scale([0.5], k=2)
    [1.0]
    >>> print(scale([], 1))
    []
    """
    return [x * k for x in xs]
'''


def test_doctests_give_types_seeds_and_expected_outputs():
    cand = one(DOCTESTS)
    # [1, 2] and [0.5]: list of float; 3, 2 and 1: int (the print() example counts too)
    assert types(cand) == {"xs": ("list[float]", "doctest"), "k": ("int", "doctest")}
    assert cand.seeds[:3] == [([[1, 2], 3], {}), ([[0.5]], {"k": 2}), ([[], 1], {})]
    assert [c.want for c in cand.doctests] == ["[3, 6]", "[1.0]"]  # print(...) is no call of it
    assert cand.params[0].values[:2] == ([1, 2], [0.5])  # edge values of the inputs


def test_doctest_calls_of_other_functions_do_not_count():
    got = examples(">>> other(1)\n1\n>>> f('a')\n'a'\n",
                   lambda node: "f" if getattr(node, "id", None) == "f" else None)
    assert [(k, c.args, c.want) for k, c in got] == [("f", ["a"], "'a'")]


# -- call sites -------------------------------------------------------------------------------
LIB = '''
def pad(text, width, fill=" "):
    """Pad text to width."""
    return text + fill * (width - len(text))
'''
USERS = {
    "app.main": "from lib import pad\n\nprint(pad('ab', 5, fill='.'))\n",
    "app.alias": "import lib as L\n\nX = L.pad('x', 3)\n",
    "app.docs": 'def g():\n    """\n    >>> from lib import pad\n    >>> pad("q", 2)\n    \'q \'\n'
                '    """\n',
    "app.other": "def pad(a, b):\n    return a\n\npad(1, 2)\n",  # another module's pad
}


def test_call_sites_across_the_corpus():
    index = CallIndex()
    for module, text in USERS.items():
        index.add_module(text, module)
    index.add_module(LIB, "lib")
    assert len(index.calls("lib.pad")) == 3 and len(index.calls("app.other.pad")) == 1
    cand = one(LIB, "lib", calls=index)
    assert types(cand) == {"text": ("str", "callsite"), "width": ("int", "callsite"),
                           "fill": ("str", "callsite")}
    assert (["ab", 5], {"fill": "."}) in cand.seeds and (["q", 2], {}) in cand.seeds


def test_relative_imports_resolve_to_the_module():
    index = CallIndex()
    index.add_module("from .util import half\n\nY = half(10)\n", "pkg.user")
    index.add_module("from . import util\n\nZ = util.half(4)\n", "pkg", is_package=True)
    assert [c.args for c in index.calls("pkg.util.half")] == [[10], [4]]


# -- defaults, order, drops -------------------------------------------------------------------
def test_defaults_and_the_order_of_sources():
    src = '''
    def f(a, b=2, c=(",", ";"), d=None, e=1.5):
        """Do it.

        :param b: a float, said by the docstring
        :type b: float
        """
        return a
    '''
    index = CallIndex()
    index.add_module("from m import f\nf('x', 3, e=2)\n", "user")
    # a: a call site; b: docstring before call site and default; c: its default; d: nothing
    # says (None says nothing); e: a call site (int) comes before its float default.
    assert types(one(src, calls=index)) == {
        "a": ("str", "callsite"), "b": ("float", "docstring"), "c": ("tuple[str, str]", "default"),
        "d": (None, None), "e": ("int", "callsite")}


def test_annotations_stay_first_and_unknown_parameters_wait_for_probing():
    cand = one('def f(x: int, y, z=3):\n    """Doc."""\n    return x\n')
    assert types(cand) == {"x": ("int", "annotation"), "y": (None, None), "z": ("int", "default")}
    assert [p.name for p in cand.unknown] == ["y"]


@pytest.mark.parametrize("src,kw,reason", [
    ("def f(x):\n    return x\n", {"allow_bare": False}, "no docstring"),
    ("def f(xs):\n    '''Sort in place.'''\n    xs.sort()\n", {}, "returns None"),
    ("def f(x, y):\n    '''Doc.'''\n    return x\n", {"infer_defaults": False}, "no annotations"),
    ("def f(x: int, y):\n    '''Doc.'''\n    return x\n", {"infer_defaults": False},
     "partly annotated"),
])
def test_static_drops_of_untyped_functions(src, kw, reason):
    item = one(src, **kw)
    assert isinstance(item, Rejected) and item.reason == reason, item


def test_bare_functions_kept_with_allow_bare_and_explicit_raises_noted():
    cand = one("def f(x):\n    if x < 0:\n        raise ValueError(x)\n    return x\n",
               allow_bare=True)
    assert isinstance(cand, Candidate) and not cand.has_docstring
    assert cand.raises == frozenset({"ValueError"})
    assert cand.prompt == "def f(x):\n"


# -- values -----------------------------------------------------------------------------------
@pytest.mark.parametrize("values,expected", [
    ([1, 2], "int"), ([1, 2.5], "float"), ([[1], []], "list[int]"), ([[]], "list[int]"),
    ([[1], ["a"]], "list[int] | list[str]"), ([(1, 2), (1, 2, 3)], "tuple[int, ...]"),
    ([(1, "a")], "tuple[int, str]"), ([{"a": 1}], "dict[str, int]"), ([1, None], "int | None"),
    ([{1, 2}], "set[int]"), ([{"a"}], None), ([None], "None"),
])
def test_values_join_into_one_type(values, expected):
    spec = spec_of_values(values)
    assert (str(spec) if spec else None) == expected


def test_join_does_not_depend_on_the_order_but_for_union_members():
    for a, b in [(1, 2.0), ([1], []), ((1, 2), (1, 2, 3)), ([1], [2.5])]:
        assert join(spec_of_value(a), spec_of_value(b)) == join(spec_of_value(b), spec_of_value(a))
    ab, ba = join(spec_of_value("a"), None), join(spec_of_value(None), spec_of_value("a"))
    assert str(ab) == "str" and set(ba.args) == {Spec("str"), Spec("none")}


# -- probing: names and the ranking of hypotheses ------------------------------------------------
@pytest.mark.parametrize("name,first", [
    ("n", "int"), ("count", "int"), ("arr", "list[int]"), ("nums", "list[int]"),
    ("s", "str"), ("text", "str"), ("test_str", "str"), ("words", "list[str]"),
    ("test_tup1", "tuple[int, ...]"), ("matrix", "list[list[int]]"), ("d", "dict[str, int]"),
    ("reverse", "bool"), ("radius", "float"), ("whatever", "int"),
])
def test_probing_starts_from_the_name(name, first):
    options = plausible(name)
    assert str(options[0]) == first
    assert len(set(options)) == len(options) >= 10  # every generic type is tried in the end


def test_hypotheses_rank_by_type_errors_then_returns_then_names():
    from problems.gentests.probe import Observation

    def obs(*kinds):
        return [Observation("ok", 1) if k == "ok" else Observation(
            "error", error={"type": k}) for k in kinds]

    type_bad = _score(obs("TypeError", "TypeError", "TypeError", "ok"))
    runs = _score(obs("ok", "ok", "IndexError", "ok"))
    runs_less = _score(obs("ok", "IndexError", "IndexError", "ok"))
    assert type_bad[:3] == (1, 3, 4) and not _key(type_bad, 0)[0]  # most calls: TypeError
    assert _key(runs, 5) > _key(runs_less, 0)  # most calls return beats a plausible name
    assert _key(runs, 0) > _key(runs, 3)  # then the more plausible names win
    assert Spec("int") == plausible("n")[0]
    none = [Observation("error", error={"type": "AttributeError", "line": 3,
                                        "msg": "'NoneType' object has no attribute 'start'"})]
    assert _score(none)[1] == 0  # the function's own None, not a wrong argument type
    early = [Observation("error", error={"type": "TypeError", "line": 2})]
    later = [Observation("error", error={"type": "TypeError", "line": 5})]
    assert _key(_score(later), 0) > _key(_score(early), 0)  # it got further
