"""The executor pool's autoscaling policy and the controller's mailbox (pure, no Ray)."""

from __future__ import annotations

import pytest

from cluster.controller import Controller, autoscale
from core.config import ExecutorConfig

P = ExecutorConfig(min_workers=1, max_workers=6, target_queue_per_worker=2.0,
                   autoscale_cooldown_s=10)


def test_grows_to_the_size_that_brings_the_queue_to_target():
    # 2 executors, 9 programs waiting: 9 / 2.0 = 4.5 -> 5 executors
    assert autoscale(P, size=2, queue_depth=9, busy=2, since_change_s=60) == 5
    # a queue just over target grows by at least one: 5 > 2*2 -> max(3, ceil(2.5)=3) = 3
    assert autoscale(P, size=2, queue_depth=5, busy=2, since_change_s=60) == 3
    # never past the maximum: 40 / 2 = 20 -> 6
    assert autoscale(P, size=2, queue_depth=40, busy=2, since_change_s=60) == 6


def test_keeps_its_size_at_target_and_within_the_cooldown():
    assert autoscale(P, size=2, queue_depth=4, busy=2, since_change_s=60) == 2  # 4 = 2*2
    assert autoscale(P, size=2, queue_depth=40, busy=2, since_change_s=5) == 2  # cooldown
    assert autoscale(P, size=6, queue_depth=40, busy=6, since_change_s=60) == 6  # at max


def test_shrinks_by_one_when_two_or_more_sit_idle():
    assert autoscale(P, size=4, queue_depth=0, busy=2, since_change_s=60) == 3
    assert autoscale(P, size=4, queue_depth=0, busy=3, since_change_s=60) == 4  # one idle
    assert autoscale(P, size=4, queue_depth=1, busy=0, since_change_s=60) == 4  # work waits
    assert autoscale(P, size=1, queue_depth=0, busy=0, since_change_s=60) == 1  # at min


def test_out_of_bounds_sizes_are_brought_back_even_in_cooldown():
    assert autoscale(P, size=9, queue_depth=0, busy=0, since_change_s=0) == 6
    lo = ExecutorConfig(min_workers=3, max_workers=6)
    assert autoscale(lo, size=1, queue_depth=0, busy=0, since_change_s=0) == 3


def test_controller_mailbox_keeps_the_latest_request():
    c = Controller()
    assert c.take_request() is None
    assert c.scale_executors(3) == 1
    assert c.scale_executors(2) == 2  # a newer request replaces an unapplied one
    assert c.take_request() == (2, 2)
    assert c.take_request() is None
    with pytest.raises(ValueError, match="at least 1"):
        c.scale_executors(0)
    c.report({"executor_pool_size": 2, "applied_request": 2})
    assert c.status()["applied_request"] == 2
