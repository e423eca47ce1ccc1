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
