import math

import pytest

from evaluation.passk import format_table, pass_at_k, summarise


def test_pass_at_k_hand_values():
    # n=5, c=2, k=1: 1 - C(3,1)/C(5,1) = 1 - 3/5 = 0.4
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # n=10, c=1, k=10: the one correct sample is always drawn -> 1
    assert pass_at_k(10, 1, 10) == 1.0
    # no correct sample -> 0 for any k
    assert pass_at_k(10, 0, 5) == 0.0
    # n=4, c=3, k=2: fewer than k failing samples -> 1
    assert pass_at_k(4, 3, 2) == 1.0
    # matches the closed form with binomials on a larger case
    n, c, k = 200, 13, 10
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_k_rejects_bad_input():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_summary_means_over_problems_and_groups():
    counts = {"a": (4, 4), "b": (4, 0), "c": (4, 2)}
    groups = {"format": {"a": "call", "b": "call", "c": "stdio"}}
    r = summarise(counts, [1, 2, 8], groups)
    # k=8 > n=4 is left out
    assert r.ks == [1, 2]
    # pass@1 per problem: 1, 0, 0.5 -> mean 0.5
    assert r.overall["pass@1"] == pytest.approx(0.5)
    # pass@2 for c: 1 - C(2,2)/C(4,2) = 1 - 1/6
    assert r.per_problem["c"]["pass@2"] == pytest.approx(5 / 6)
    assert r.by_group["format"]["call"]["pass@1"] == pytest.approx(0.5)
    assert r.by_group["format"]["stdio"]["problems"] == 1
    assert "format=call" in format_table(r)


def test_normal_ci_on_hand_worked_numbers():
    from evaluation.passk import normal_ci

    # per-problem pass rates 0, 0.5, 1, 0.5: mean 0.5; deviations -.5, 0, .5, 0 -> sum of
    # squares 0.5, sample variance 0.5 / 3 = 1/6, sd 0.40825; half-width
    # 1.959964 * 0.40825 / sqrt(4) = 0.40008
    iv = normal_ci([0.0, 0.5, 1.0, 0.5])
    assert iv.mean == pytest.approx(0.5)
    assert iv.hi - iv.mean == pytest.approx(0.40008, abs=1e-5)
    assert iv.lo == pytest.approx(0.5 - 0.40008, abs=1e-5) and iv.count == 4
    # identical values: no spread, a zero-width interval
    iv = normal_ci([0.3] * 10)
    assert (iv.lo, iv.mean, iv.hi) == pytest.approx((0.3, 0.3, 0.3))
    # paired differences of two variants on 5 problems: (1-0), (1-1), (.5-0), (0-0), (1-.5)
    # = 1, 0, .5, 0, .5 -> mean 0.4; squares of deviations .36 .16 .01 .16 .01 = .7;
    # variance .7 / 4 = .175, sd .41833, half-width 1.959964 * .41833 / sqrt(5) = .36667
    iv = normal_ci([1.0, 0.0, 0.5, 0.0, 0.5])
    assert (iv.mean, iv.hi - iv.mean) == pytest.approx((0.4, 0.36667), abs=1e-5)
    with pytest.raises(ValueError):
        normal_ci([])


def test_t_ci_over_seeds_on_hand_worked_numbers():
    from evaluation.passk import t975, t_ci

    assert t975(2) == pytest.approx(4.303) and t975(1) == pytest.approx(12.706)
    assert t975(100) == pytest.approx(1.96, abs=1e-3)
    # three seeds: +0.04, +0.06, +0.08 -> mean .06, sd .02, half-width 4.303 * .02 / sqrt(3)
    # = .049687
    iv = t_ci([0.04, 0.06, 0.08])
    assert iv.mean == pytest.approx(0.06) and iv.count == 3
    assert iv.hi - iv.mean == pytest.approx(0.049687, abs=1e-6)
    assert iv.pct(sign=True) == "+6.0% [+1.0, +11.0]"
    with pytest.raises(ValueError):
        t_ci([0.1])


def test_eval_result_figures_per_slice():
    from evaluation.run import EvalResult

    # a: 10 samples 3 passed, greedy passed; b: 0/10, greedy failed; c: 10/10, greedy passed
    res = EvalResult(split="test", n=10, temperature=0.6, problems={
        "a": {"n": 10, "c": 3, "greedy": 1, "slice": "reference", "family": "x"},
        "b": {"n": 10, "c": 0, "greedy": 0, "slice": "tests", "family": "y"},
        "c": {"n": 10, "c": 10, "greedy": 1, "slice": "tests", "family": "y"}})
    fig = res.figures()
    assert list(fig) == ["all", "reference", "tests"]
    assert fig["all"]["pass@1"]["mean"] == pytest.approx((0.3 + 0 + 1) / 3)
    assert fig["all"]["greedy"]["mean"] == pytest.approx(2 / 3)
    assert fig["tests"]["pass@1"]["mean"] == pytest.approx(0.5) and fig["tests"]["problems"] == 2
    # one problem in the slice: no spread to estimate, a zero-width interval
    assert fig["reference"]["pass@1"]["lo"] == pytest.approx(0.3)
    assert res.headline() == pytest.approx(1.3 / 3)
    assert EvalResult.from_json(res.to_json()).figures() == fig
    assert res.lines()[1].startswith("test reference (1 problems): pass@1 (n=10, T=0.6) 30.0%")
