"""The built-in task suite: small, seeded programming tasks in all three formats.

    rltf data synth --out suite.jsonl --n 400 --seed 0

Tasks are compositions of primitives, so a tiny model can partly master them after a short
warm start and RL has room to help:

* `call` and `stdio`: filter -> map -> reduce over a list of integers, e.g. "the sum of the
  squares of the even numbers". Edge cases (empty results, negatives) are in every test set,
  so a solution that forgets them passes some tests but not all (what adaptive feedback
  rewards), and most mistakes a small model makes sit on one line (a wrong operator or
  name: what fine-grained feedback blames).
* `assert`: word pipelines on strings, e.g. "reverse the order of the words, then make them
  uppercase".

The train / held-out split is by composition: a held-out task is a combination of primitives
never seen together in training (each primitive itself is seen), never a copy of a training
task. Reference solutions share one short style.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from dataclasses import dataclass

from executor.records import Problem, write_jsonl

# (key, kind, phrase, condition on x); the kind groups parameter variants for the split
FILTERS = [("all", "all", "all the numbers", None),
           ("even", "even", "the even numbers", "x % 2 == 0"),
           ("odd", "odd", "the odd numbers", "x % 2 != 0"),
           ("pos", "sign", "the positive numbers", "x > 0"),
           ("neg", "sign", "the negative numbers", "x < 0"),
           ("nz", "sign", "the numbers that are not zero", "x != 0")]
FILTERS += [(f"gt{k}", "gt", f"the numbers greater than {k}", f"x > {k}") for k in (1, 2, 3, 4)]
FILTERS += [(f"lt{k}", "lt", f"the numbers less than {k}", f"x < {k}") for k in (0, 1, 2, 3)]
FILTERS += [(f"div{k}", "div", f"the numbers divisible by {k}", f"x % {k} == 0")
            for k in (3, 4, 5)]
# (key, kind, phrase template with {0} = the filter phrase, expression)
MAPS = [("id", "id", "{0}", "x"),
        ("sq", "sq", "the squares of {0}", "x * x"),
        ("neg", "neg", "the negatives of {0}", "-x"),
        ("abs", "abs", "the absolute values of {0}", "abs(x)")]
MAPS += [(f"add{k}", "add", "each of {0} plus " + str(k), f"x + {k}") for k in (1, 2, 3)]
MAPS += [(f"mul{k}", "mul", f"{k} times each of {{0}}", f"{k} * x") for k in (2, 3, 4)]
# (key, phrase template with {0} = the mapped phrase, call-format return lines)
REDUCES = [
    ("sum", "the sum of {0}", ["return sum(values)"]),
    ("max", "the largest of {0}, or 0 if there are none",
     ["return max(values) if values else 0"]),
    ("min", "the smallest of {0}, or 0 if there are none",
     ["return min(values) if values else 0"]),
    ("cnt", "how many of {0} there are", ["return len(values)"]),
    ("prod", "the product of {0} (1 if there are none)",
     ["result = 1", "for v in values:", "    result *= v", "return result"]),
    ("list", "the list of {0}, in order", ["return values"]),
]
WORD_OPS = [
    ("keep", "keep the words in order", None),
    ("rev", "reverse the order of the words", "words = words[::-1]"),
    ("sort", "sort the words alphabetically", "words = sorted(words)"),
    ("long", "keep only the words longer than 3 letters",
     "words = [w for w in words if len(w) > 3]"),
    ("short", "keep only the words of at most 3 letters",
     "words = [w for w in words if len(w) <= 3]"),
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


@dataclass(frozen=True)
class Spec:
    fmt: str
    parts: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.fmt}:" + "-".join(self.parts)


def _list_solution(f, m, r, stdio: bool) -> str:
    cond = FILTERS[f][3]
    expr = MAPS[m][3]
    comp = f"[{expr} for x in xs if {cond}]" if cond else f"[{expr} for x in xs]"
    body = [f"values = {comp}"] + REDUCES[r][2]
    if not stdio:
        return "def solve(xs):\n" + "".join(f"    {line}\n" for line in body)
    lines = ["xs = list(map(int, input().split()))", f"values = {comp}"]
    ret = REDUCES[r][2]
    if ret[0].startswith("return "):
        value = ret[0][len("return "):]
        if REDUCES[r][0] == "list":
            lines.append("print(' '.join(str(v) for v in values))")
        else:
            lines.append(f"print({value})")
    else:
        lines += ret[:-1] + ["print(result)"]
    return "".join(line + "\n" for line in lines)


def _list_reference(f, m, r, xs):
    cond = FILTERS[f][3]
    vals = [eval(MAPS[m][3], {}, {"x": x}) for x in xs
            if cond is None or eval(cond, {}, {"x": x})]
    key = REDUCES[r][0]
    if key == "sum":
        return sum(vals)
    if key == "max":
        return max(vals) if vals else 0
    if key == "min":
        return min(vals) if vals else 0
    if key == "cnt":
        return len(vals)
    if key == "prod":
        out = 1
        for v in vals:
            out *= v
        return out
    return vals


def _list_inputs(rng: random.Random, n: int) -> list[list[int]]:
    fixed = [[], [-3, -1, -2], [0, 4, 7]]
    rand = [[rng.randint(-9, 9) for _ in range(rng.randint(1, 7))] for _ in range(n)]
    return fixed + rand


def _words_solution(w, c) -> str:
    lines = ["words = s.split()"]
    if WORD_OPS[w][2]:
        lines.append(WORD_OPS[w][2])
    lines.append(f"words = [{CHAR_OPS[c][2]} for w in words]")
    lines.append("return ' '.join(words)")
    return "def solve(s):\n" + "".join(f"    {line}\n" for line in lines)


def _words_reference(w, c, s: str) -> str:
    ns: dict = {}
    exec(_words_solution(w, c), ns)
    return ns["solve"](s)


def _phrase_list(f, m, r) -> str:
    return REDUCES[r][1].format(MAPS[m][2].format(FILTERS[f][2]))


def all_specs() -> list[Spec]:
    specs = []
    for fmt in ("call", "stdio"):
        for f, m, r in itertools.product(range(len(FILTERS)), range(len(MAPS)),
                                         range(len(REDUCES))):
            specs.append(Spec(fmt, (str(f), str(m), str(r))))
    for w, c in itertools.product(range(len(WORD_OPS)), range(len(CHAR_OPS))):
        specs.append(Spec("assert", (str(w), str(c))))
    return specs


def build_problem(spec: Spec, rng: random.Random, split: str, index: int) -> Problem:
    ids = [int(p) for p in spec.parts]
    tid = f"synth/{spec.fmt}/{'-'.join(spec.parts)}"
    meta = {"family": spec.fmt, "parts": list(spec.parts), "index": index}
    if spec.fmt in ("call", "stdio"):
        f, m, r = ids
        meta["primitives"] = [FILTERS[f][0], MAPS[m][0], REDUCES[r][0]]
        meta["kinds"] = [FILTERS[f][1], MAPS[m][1]]
        inputs = _list_inputs(rng, 4)
        what = _phrase_list(f, m, r)
        if spec.fmt == "call":
            prompt = f"Given a list of integers xs, return {what}."
            tests = [{"input": [xs], "output": _list_reference(f, m, r, xs)} for xs in inputs]
            return Problem(task_id=tid, prompt=prompt, format="call", fn_name="solve",
                           starter_code="def solve(xs):\n", tests=tests,
                           solutions=[_list_solution(f, m, r, False)], split=split,
                           difficulty="synth", metadata=meta)
        prompt = f"Read a line of integers and print {what}."
        tests = []
        for xs in inputs:
            out = _list_reference(f, m, r, xs)
            text = " ".join(str(v) for v in out) if isinstance(out, list) else str(out)
            tests.append({"input": " ".join(map(str, xs)) + "\n", "output": text + "\n"})
        return Problem(task_id=tid, prompt=prompt, format="stdio", tests=tests,
                       solutions=[_list_solution(f, m, r, True)], split=split,
                       difficulty="synth", metadata=meta)
    w, c = ids
    meta["primitives"] = [WORD_OPS[w][0], CHAR_OPS[c][0]]
    prompt = (f"Given a string s of words separated by spaces, {WORD_OPS[w][1]}, then "
              f"{CHAR_OPS[c][1]}, and return the words joined by single spaces.")
    samples = ["", " ".join(rng.sample(_WORDS, 3)), " ".join(rng.sample(_WORDS, 5)),
               "  ".join(rng.sample(_WORDS, 2)), " ".join(rng.sample(_WORDS, 4))]
    tests = [f"assert solve({s!r}) == {_words_reference(w, c, s)!r}" for s in samples]
    return Problem(task_id=tid, prompt=prompt, format="assert", entry_point="solve",
                   starter_code="def solve(s):\n", tests=tests,
                   solutions=[_words_solution(w, c)], split=split, difficulty="synth",
                   metadata=meta)


def split_specs(specs: list[Spec], seed: int, heldout_frac: float = 0.15
                ) -> tuple[list[Spec], list[Spec]]:
    """Hold out whole primitive *pairs*: every task whose (filter, map) pair — or, for string
    tasks, (word op, letter op) pair — is held out goes to the held-out split, so a held-out
    task combines primitives never seen together in training. Each primitive itself still
    occurs in training with other partners."""
    rng = random.Random(seed)
    def kind_pair(spec: Spec) -> tuple[str, str]:
        a, b = int(spec.parts[0]), int(spec.parts[1])
        if spec.fmt == "assert":
            return (str(a), str(b))
        return (FILTERS[a][1], MAPS[b][1])

    pairs_by_fmt: dict[str, list[tuple[str, str]]] = {}
    for spec in specs:
        pairs_by_fmt.setdefault(spec.fmt, [])
        pair = kind_pair(spec)
        if pair not in pairs_by_fmt[spec.fmt]:
            pairs_by_fmt[spec.fmt].append(pair)
    held_pairs: set[tuple[str, tuple[str, str]]] = set()
    for fmt, pairs in pairs_by_fmt.items():
        order = pairs[:]
        rng.shuffle(order)
        want = max(1, int(len(order) * heldout_frac))
        chosen: list[tuple[str, str]] = []
        for pair in order:
            if len(chosen) >= want:
                break
            rest = [q for q in pairs if q not in chosen and q != pair]
            # keep both primitives of the pair present in training
            if any(q[0] == pair[0] for q in rest) and any(q[1] == pair[1] for q in rest):
                chosen.append(pair)
        held_pairs.update((fmt, p) for p in chosen)
    train = [s for s in specs if (s.fmt, kind_pair(s)) not in held_pairs]
    held = [s for s in specs if (s.fmt, kind_pair(s)) in held_pairs]
    return train, held


FORMAT_SHARES = {"call": 0.45, "stdio": 0.4, "assert": 0.15}


def generate_suite(n: int = 400, seed: int = 0, heldout_frac: float = 0.15) -> list[Problem]:
    """`n` tasks (train and held-out by composition, every format in proportion),
    deterministic for a seed."""
    specs = all_specs()
    train, held = split_specs(specs, seed, heldout_frac)
    rng = random.Random(seed + 1)
    chosen: list[tuple[Spec, str]] = []
    for fmt, share in FORMAT_SHARES.items():
        want = max(2, round(n * share))
        tr = [s for s in train if s.fmt == fmt]
        he = [s for s in held if s.fmt == fmt]
        rng.shuffle(tr)
        rng.shuffle(he)
        n_hold = min(len(he), max(1, round(want * heldout_frac)))
        n_train = min(len(tr), want - n_hold)
        chosen += [(s, "train") for s in tr[:n_train]] + [(s, "heldout") for s in he[:n_hold]]
    return [build_problem(s, random.Random(f"{seed}:{s.key}"), split, i)
            for i, (s, split) in enumerate(chosen)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rltf data synth", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="problems JSONL to write")
    ap.add_argument("--n", type=int, default=400, help="number of tasks (train + held-out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heldout-frac", type=float, default=0.15)
    args = ap.parse_args(argv)
    problems = generate_suite(args.n, args.seed, args.heldout_frac)
    write_jsonl(args.out, problems)
    counts = {}
    for p in problems:
        counts[(p.split, p.format)] = counts.get((p.split, p.format), 0) + 1
    print(f"wrote {len(problems)} tasks to {args.out}: " + ", ".join(
        f"{s}/{f}={c}" for (s, f), c in sorted(counts.items())), file=sys.stderr)
    return 0
