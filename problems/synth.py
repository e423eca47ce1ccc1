"""The built-in task suite: seeded programming tasks in five families and three formats, split
into train / val / test by composition, with part of the training problems carrying unit
tests and no reference solution.

    rltf data synth --out suite.jsonl --n 1200 --seed 0

Families and what each is for (`metadata.family`; `metadata.teacher` names the slice):

Reference families: every training problem carries one reference program, which the
supervised warm start and the supervised term train on.

* `list-call`: filter -> map -> reduce over a list of integers as a function, in the
  canonical wording ("return the sum of the squares of the even numbers"). Edge cases
  (empty results, negatives) are in every test set, so a program that forgets one passes
  some tests (what adaptive feedback rewards); most mistakes sit on one line (what
  fine-grained feedback blames).
* `list-stdio`: the same pipelines as a script that reads standard input.
* `words-assert`: word pipelines on strings ("reverse the order of the words, then make
  them uppercase"), judged by assert statements.

Tests-only families: training problems carry unit tests and no reference, as much real data
does, so only the RL term learns from them; a supervised control reaches them by transfer
alone. Each is built so that a warm-started model already solves some of them (RL needs
passing samples to reinforce) but not most:

* `reworded-call` / `reworded-stdio`: the list pipelines with the reduction named in a second
  vocabulary: "the total of", "the greatest of ..., or 0 if there are none", "the least of",
  "the size of", "... multiplied together (1 if there are none)", "..., listed in order".
  The programs are the ones the model writes for the canonical wording; what it has to learn
  from the tests is what six new names mean. Each name keeps what the canonical one says
  about an empty list, so the warm start narrows its guess down (max or min?) and now and
  then guesses right; only the tests say when. Earlier designs of this family named all
  three operations anew, or one of them at random from 31 new names: the warm start then
  solved 0-3% (all three), or most names never or always (one of 31), and 120 RL steps
  met each name too rarely to learn it.

Splits (`split`: train, val, test): a composition is the pair of operation kinds that
makes a program's distinctive line, across every family and format: (filter kind, map
kind) for the list families (`[x * x for x in xs if x % 2 == 0]` is the same line in a
function and a script, canonical or terse), (word op, letter op) for the word families.
Each pair belongs to exactly one split, so no val or test composition appears in training in
any family or format; every single operation kind still occurs in training. The validation
split serves every choice of settings; the test split is only reported.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import random
import sys
from dataclasses import dataclass

from core.records import Problem, write_jsonl

# (key, kind, phrase, condition on x)
FILTERS = [("all", "all", "all the numbers", None),
           ("even", "even", "the even numbers", "x % 2 == 0"),
           ("odd", "odd", "the odd numbers", "x % 2 != 0"),
           ("pos", "sign", "the positive numbers", "x > 0"),
           ("neg", "sign", "the negative numbers", "x < 0"),
           ("nz", "sign", "the numbers that are not zero", "x != 0")]
FILTERS += [(f"gt{k}", "gt", f"the numbers greater than {k}", f"x > {k}") for k in (1, 2, 3, 4)]
# no "less than 0": its line `x < 0` would be the negative numbers' line under another kind
FILTERS += [(f"lt{k}", "lt", f"the numbers less than {k}", f"x < {k}") for k in (1, 2, 3)]
FILTERS += [(f"div{k}", "div", f"the numbers divisible by {k}", f"x % {k} == 0")
            for k in (3, 4, 5)]
# (key, kind, phrase template with {0} = the filter phrase, expression)
MAPS = [("id", "id", "{0}", "x"),
        ("sq", "sq", "the squares of {0}", "x * x"),
        ("neg", "neg", "the negatives of {0}", "-x"),
        ("abs", "abs", "the absolute values of {0}", "abs(x)")]
MAPS += [(f"add{k}", "add", "each of {0} plus " + str(k), f"x + {k}") for k in (1, 2, 3)]
MAPS += [(f"mul{k}", "mul", f"{k} times each of {{0}}", f"{k} * x") for k in (2, 3, 4)]
# (key, canonical template with {0} = the mapped phrase, function's closing lines, reworded
# template): the reworded names keep what the canonical ones say about an empty list, so a
# warm-started model narrows its guess down (greatest / least: max or min?) and only the
# tests tell it which
REDUCES = [
    ("sum", "the sum of {0}", ["return sum(values)"], "the total of {0}"),
    ("max", "the largest of {0}, or 0 if there are none",
     ["return max(values) if values else 0"], "the greatest of {0}, or 0 if there are none"),
    ("min", "the smallest of {0}, or 0 if there are none",
     ["return min(values) if values else 0"], "the least of {0}, or 0 if there are none"),
    ("cnt", "how many of {0} there are", ["return len(values)"], "the size of {0}"),
    ("prod", "the product of {0} (1 if there are none)",
     ["result = 1", "for v in values:", "    result *= v", "return result"],
     "{0} multiplied together (1 if there are none)"),
    ("list", "the list of {0}, in order", ["return values"], "{0}, listed in order"),
]
WORD_OPS = [
    ("keep", "keep the words in order", None),
    ("rev", "reverse the order of the words", "words = words[::-1]"),
    ("sort", "sort the words alphabetically", "words = sorted(words)"),
    ("long", "keep only the words longer than 3 letters",
     "words = [w for w in words if len(w) > 3]"),
    ("short", "keep only the words of at most 3 letters",
     "words = [w for w in words if len(w) <= 3]"),
    ("dropfirst", "drop the first word", "words = words[1:]"),
    ("droplast", "drop the last word", "words = words[:-1]"),
]
CHAR_OPS = [
    ("upper", "make them uppercase", "w.upper()"),
    ("lower", "make them lowercase", "w.lower()"),
    ("flip", "reverse the letters of each word", "w[::-1]"),
    ("cap", "capitalize each word", "w.capitalize()"),
    ("first", "keep only the first letter of each word", "w[0]"),
    ("same", "leave each word as it is", "w"),
]
_WORDS = ["apple", "Bob", "cat", "dog", "Eve", "fig", "grape", "hat", "ink", "jam", "Kite",
          "lemon", "moon", "net", "owl", "pear", "queen", "red", "sun", "tree", "up", "van"]

# family -> (format, teacher, which operations); teacher "reference" or "tests"
FAMILIES = {
    "list-call": ("call", "reference", "list"),
    "list-stdio": ("stdio", "reference", "list"),
    "words-assert": ("assert", "reference", "words"),
    "reworded-call": ("call", "tests", "list"),
    "reworded-stdio": ("stdio", "tests", "list"),
}
# share of each family in every split (the word families have few compositions)
FAMILY_SHARES = {"list-call": 0.22, "list-stdio": 0.22, "words-assert": 0.06,
                 "reworded-call": 0.25, "reworded-stdio": 0.25}
SPLIT_SHARES = {"test": 0.2, "val": 0.12}  # the rest is train
# pairs of operation kinds held out for each split (of 42 list pairs and 42 word pairs)
HELD_PAIRS = {"list": {"test": 8, "val": 6}, "words": {"test": 8, "val": 6}}


@dataclass(frozen=True)
class Spec:
    """One composition in one family: parts are operation indices."""

    family: str
    parts: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.family}:" + "-".join(map(str, self.parts))


def pair_of(kind: str, parts: tuple[int, ...]) -> tuple[str, str]:
    """The composition a program's distinctive line encodes (the unit of the split)."""
    if kind == "list":
        return (FILTERS[parts[0]][1], MAPS[parts[1]][1])
    return (WORD_OPS[parts[0]][0], CHAR_OPS[parts[1]][0])


def _comprehension(f: int, m: int) -> str:
    cond, expr = FILTERS[f][3], MAPS[m][3]
    return f"[{expr} for x in xs if {cond}]" if cond else f"[{expr} for x in xs]"


def list_program(f: int, m: int, r: int, stdio: bool) -> str:
    """The reference program of a list pipeline, as a function or a script."""
    comp = _comprehension(f, m)
    closing = REDUCES[r][2]
    if not stdio:
        return "def solve(xs):\n" + "".join(f"    {line}\n" for line in
                                            [f"values = {comp}"] + closing)
    lines = ["xs = list(map(int, input().split()))", f"values = {comp}"]
    if REDUCES[r][0] == "list":
        lines.append("print(' '.join(str(v) for v in values))")
    elif len(closing) == 1:
        lines.append(f"print({closing[0][len('return '):]})")
    else:
        lines += closing[:-1] + ["print(result)"]
    return "".join(line + "\n" for line in lines)


def words_program(w: int, c: int, stdio: bool) -> str:
    """The reference program of a word pipeline, as a function or a script."""
    lines = ["words = input().split()" if stdio else "words = s.split()"]
    if WORD_OPS[w][2]:
        lines.append(WORD_OPS[w][2])
    lines.append(f"words = [{CHAR_OPS[c][2]} for w in words]")
    if stdio:
        return "".join(line + "\n" for line in lines + ["print(' '.join(words))"])
    lines.append("return ' '.join(words)")
    return "def solve(s):\n" + "".join(f"    {line}\n" for line in lines)


def reference_program(spec: Spec) -> str:
    """The correct program of any task, including the tests-only ones (whose problems never
    carry it): for checking the suite, never for training."""
    fmt, _, kind = FAMILIES[spec.family]
    if kind == "list":
        return list_program(*spec.parts, stdio=fmt == "stdio")
    return words_program(*spec.parts, stdio=fmt == "stdio")


@functools.lru_cache(maxsize=None)
def _function(program: str):
    """The reference function itself: expected outputs are what the reference returns."""
    ns: dict = {}
    exec(program, ns)
    return ns["solve"]


def _list_value(f: int, m: int, r: int, xs: list[int]):
    return _function(list_program(f, m, r, False))(list(xs))


def _words_value(w: int, c: int, s: str) -> str:
    return _function(words_program(w, c, False))(s)


def _list_inputs(rng: random.Random, n: int) -> list[list[int]]:
    fixed = [[], [-3, -1, -2], [0, 4, 7]]
    return fixed + [[rng.randint(-9, 9) for _ in range(rng.randint(1, 7))] for _ in range(n)]


def _word_inputs(rng: random.Random) -> list[str]:
    return ["", " ".join(rng.sample(_WORDS, 3)), " ".join(rng.sample(_WORDS, 5)),
            "  ".join(rng.sample(_WORDS, 2)), " ".join(rng.sample(_WORDS, 4))]


def _list_prompt(family: str, f: int, m: int, r: int) -> str:
    """The statement; the reworded families name the reduction in the second vocabulary."""
    reduce_ = REDUCES[r][3] if family.startswith("reworded") else REDUCES[r][1]
    what = reduce_.format(MAPS[m][2].format(FILTERS[f][2]))
    return (f"Given a list of integers xs, return {what}." if family.endswith("-call")
            else f"Read a line of integers and print {what}.")


def build_problem(spec: Spec, rng: random.Random, split: str) -> Problem:
    fmt, teacher, kind = FAMILIES[spec.family]
    tid = f"synth/{spec.family}/{'-'.join(map(str, spec.parts))}"
    meta = {"family": spec.family, "teacher": teacher, "parts": list(spec.parts),
            "pair": list(pair_of(kind, spec.parts))}
    # tests-only families carry no reference in training; held-out problems never train,
    # and keep theirs so that the suite can be checked
    solutions = [] if (teacher == "tests" and split == "train") else [reference_program(spec)]
    common = dict(task_id=tid, solutions=solutions, split=split, difficulty=spec.family,
                  metadata=meta)
    if kind == "list":
        f, m, r = spec.parts
        meta["primitives"] = [FILTERS[f][0], MAPS[m][0], REDUCES[r][0]]
        prompt = _list_prompt(spec.family, f, m, r)
        inputs = _list_inputs(rng, 4)
        if fmt == "call":
            tests = [{"input": [xs], "output": _list_value(f, m, r, xs)} for xs in inputs]
            return Problem(prompt=prompt, format="call", fn_name="solve",
                           starter_code="def solve(xs):\n", tests=tests, **common)
        tests = []
        for xs in inputs:
            out = _list_value(f, m, r, xs)
            text = " ".join(str(v) for v in out) if isinstance(out, list) else str(out)
            tests.append({"input": " ".join(map(str, xs)) + "\n", "output": text + "\n"})
        return Problem(prompt=prompt, format="stdio", tests=tests, **common)
    w, c = spec.parts
    meta["primitives"] = [WORD_OPS[w][0], CHAR_OPS[c][0]]
    samples = _word_inputs(rng)
    if fmt == "assert":
        prompt = (f"Given a string s of words separated by spaces, {WORD_OPS[w][1]}, then "
                  f"{CHAR_OPS[c][1]}, and return the words joined by single spaces.")
        tests = [f"assert solve({s!r}) == {_words_value(w, c, s)!r}" for s in samples]
        return Problem(prompt=prompt, format="assert", entry_point="solve",
                       starter_code="def solve(s):\n", tests=tests, **common)
    prompt = (f"Read a line of words, {WORD_OPS[w][1]}, then {CHAR_OPS[c][1]}, and print "
              "the words joined by single spaces.")
    tests = [{"input": s + "\n", "output": _words_value(w, c, s) + "\n"} for s in samples]
    return Problem(prompt=prompt, format="stdio", tests=tests, **common)


def all_specs(kind: str) -> list[tuple[int, ...]]:
    if kind == "list":
        return list(itertools.product(range(len(FILTERS)), range(len(MAPS)),
                                      range(len(REDUCES))))
    return list(itertools.product(range(len(WORD_OPS)), range(len(CHAR_OPS))))


def split_pairs(kind: str, seed: int) -> dict[tuple[str, str], str]:
    """Each pair of operation kinds -> "train", "val" or "test". Held-out pairs are drawn at
    random under one rule: every operation kind of a held-out pair keeps a partner in
    training, so a held-out task combines operations each seen, never seen together."""
    pairs = sorted({pair_of(kind, p) for p in all_specs(kind)})
    order = pairs[:]
    random.Random(f"{seed}:{kind}:pairs").shuffle(order)
    out = {p: "train" for p in pairs}
    for split in ("test", "val"):
        want = HELD_PAIRS[kind][split]
        for pair in order:
            if want == 0:
                break
            if out[pair] != "train":
                continue
            rest = [q for q in pairs if out[q] == "train" and q != pair]
            if any(q[0] == pair[0] for q in rest) and any(q[1] == pair[1] for q in rest):
                out[pair] = split
                want -= 1
    return out


def split_counts(n: int) -> dict[str, int]:
    test = round(n * SPLIT_SHARES["test"])
    val = round(n * SPLIT_SHARES["val"])
    return {"train": n - test - val, "val": val, "test": test}


def generate_suite(n: int = 1200, seed: int = 0) -> list[Problem]:
    """About `n` tasks over every family and split, deterministic for a seed; a family with
    fewer compositions in a split than its share gets all it has."""
    splits = {kind: split_pairs(kind, seed) for kind in ("list", "words")}
    rng = random.Random(f"{seed}:choose")
    problems: list[Problem] = []
    for split, total in split_counts(n).items():
        chosen = []
        for family, share in FAMILY_SHARES.items():
            kind = FAMILIES[family][2]
            pool = [p for p in all_specs(kind) if splits[kind][pair_of(kind, p)] == split]
            rng.shuffle(pool)
            chosen += [Spec(family, parts) for parts in pool[:max(1, round(total * share))]]
        # families mixed, so that the first m problems of a split are a sample of it
        random.Random(f"{seed}:{split}:order").shuffle(chosen)
        problems += [build_problem(spec, random.Random(f"{seed}:{spec.key}"), split)
                     for spec in chosen]
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rltf data synth", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="problems JSONL to write")
    ap.add_argument("--n", type=int, default=1200, help="number of tasks (all splits)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    problems = generate_suite(args.n, args.seed)
    write_jsonl(args.out, problems)
    counts: dict = {}
    for p in problems:
        key = (p.split, p.metadata["family"])
        counts[key] = counts.get(key, 0) + 1
    print(f"wrote {len(problems)} tasks to {args.out}: " + ", ".join(
        f"{s}/{f}={c}" for (s, f), c in sorted(counts.items())), file=sys.stderr)
    return 0
