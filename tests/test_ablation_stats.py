"""benchmarks/ablation.py's statistics on hand-worked numbers: per-problem values averaged over
seeds, the normal interval over problems, paired differences against the control and the
warm start, and the t interval over seeds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "ablation", Path(__file__).resolve().parent.parent / "benchmarks" / "ablation.py")
ablation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ablation)


def _rec(c: int, greedy: int, slice_: str) -> dict:
    return {"n": 10, "c": c, "greedy": greedy, "slice": slice_, "family": "f"}


def test_paired_differences_over_problems_and_seeds():
    # two problems (a: reference slice, b: tests slice), two seeds; pass@1 = c / 10
    before = {0: {"a": _rec(2, 0, "reference"), "b": _rec(0, 0, "tests")},
              1: {"a": _rec(4, 0, "reference"), "b": _rec(0, 0, "tests")}}
    control = {0: {"a": _rec(5, 1, "reference"), "b": _rec(0, 0, "tests")},
               1: {"a": _rec(5, 1, "reference"), "b": _rec(2, 0, "tests")}}
    rl = {0: {"a": _rec(5, 1, "reference"), "b": _rec(6, 1, "tests")},
          1: {"a": _rec(7, 1, "reference"), "b": _rec(4, 0, "tests")}}
    stats = ablation.analyse({ablation.CONTROL: control, "rl": rl}, before)
    # rl per problem averaged over seeds: a (.5 + .7) / 2 = .6, b (.6 + .4) / 2 = .5
    assert stats["rl"]["pass@1/all"]["mean"] == pytest.approx(0.55)
    assert stats["rl"]["pass@1/tests"]["mean"] == pytest.approx(0.5)
    # rl - control per problem and seed: a: 0, .2 -> .1; b: .6, .2 -> .4; mean .25
    # sd over problems of (.1, .4): .21213, half-width 1.959964 * .21213 / sqrt(2) = .29399
    d = stats["rl"]["pass@1/all/vs_ref"]
    assert d["mean"] == pytest.approx(0.25) and d["hi"] - d["mean"] == pytest.approx(0.29399,
                                                                                    abs=1e-5)
    # per seed: seed 0 (0 + .6) / 2 = .3, seed 1 (.2 + .2) / 2 = .2; t(0.975, 1) = 12.706,
    # sd .070711, half-width 12.706 * .070711 / sqrt(2) = .63530
    t = stats["rl"]["pass@1/all/vs_ref_seeds"]
    assert t["mean"] == pytest.approx(0.25) and t["hi"] - t["mean"] == pytest.approx(0.6353,
                                                                                    abs=1e-4)
    # against the warm start: a: .3, .3; b: .6, .4 -> per problem .3, .5 -> mean .4
    assert stats["rl"]["pass@1/all/vs_warm"]["mean"] == pytest.approx(0.4)
    # the control has no difference against itself, the warm start none against the control
    assert "pass@1/all/vs_ref" not in stats[ablation.CONTROL]
    assert stats["warm start"]["pass@1/all"]["mean"] == pytest.approx(0.15)
    # greedy: rl a 1, 1; b 1, 0 -> .75
    assert stats["rl"]["greedy/all"]["mean"] == pytest.approx(0.75)
    lines = ablation.table(stats, {"rl": 10.0}, {"rl": 100.0})
    assert lines[0].startswith("| variant | all |") and len(lines) == 2 + 3


def test_runs_on_different_problems_are_refused():
    with pytest.raises(ValueError):
        ablation.seed_mean([{"a": 1.0}, {"b": 1.0}])


def test_differences_against_another_variant():
    before = {0: {"a": _rec(2, 0, "reference"), "b": _rec(0, 0, "tests")}}
    control = {0: {"a": _rec(5, 1, "reference"), "b": _rec(0, 0, "tests")}}
    rl = {0: {"a": _rec(5, 1, "reference"), "b": _rec(6, 1, "tests")}}
    stats = ablation.analyse({ablation.CONTROL: control, "rl": rl}, before, against="rl")
    # control - rl per problem: a 0, b -.6 -> mean -.3; rl has none against itself
    assert stats[ablation.CONTROL]["pass@1/all/vs_ref"]["mean"] == pytest.approx(-0.3)
    assert "pass@1/all/vs_ref" not in stats["rl"]
    assert "Δ all vs rl" in ablation.table(stats, {}, {}, against="rl")[0]
