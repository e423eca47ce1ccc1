"""Replay buffer: capacity, staleness, sampling from an empty buffer, state round trip."""

import json
import threading
import time

import pytest

from actors.replay_buffer import Experience, ReplayBuffer
from core.config import BufferConfig


def exp(i: int, version: int = 0, outcome: str = "pass") -> Experience:
    return Experience(task_id=f"t{i % 3}", sample_id=f"s{i}", prompt_ids=[1, 2],
                      completion_ids=[3, 4, 5], token_rewards=[1.0, 1.0, 0.7],
                      behaviour_logprobs=[-0.1, -0.2, -0.3], outcome=outcome, reward=1.0,
                      policy_version=version)


def test_capacity_drops_oldest_first():
    buf = ReplayBuffer(BufferConfig(capacity=3, mode="fifo"))
    assert buf.add(exp(i) for i in range(5)) == 5
    st = buf.stats()
    # 5 added into 3 slots: s0 and s1 pushed out, counted as dropped_full.
    assert (st.size, st.added, st.dropped_full) == (3, 5, 2)
    assert [e.sample_id for e in buf.sample(3)] == ["s2", "s3", "s4"]


def test_staleness_drops_and_counts_and_never_returns_stale():
    buf = ReplayBuffer(BufferConfig(capacity=10, max_staleness=1, mode="fifo"))
    buf.add([exp(0, version=0), exp(1, version=1), exp(2, version=2)])
    # The buffer is still at version 0, so all three are fresh and kept.
    assert len(buf) == 3
    assert buf.set_policy_version(2) == 1  # s0 is now 2 versions behind
    assert buf.stats().dropped_stale == 1
    assert buf.add([exp(3, version=0)]) == 0  # stale on arrival
    assert buf.stats().dropped_stale == 2
    assert [e.sample_id for e in buf.sample(10, timeout_s=0)] == ["s1", "s2"]
    with pytest.raises(ValueError, match="went back"):
        buf.set_policy_version(1)


def test_sampling_an_empty_buffer_returns_after_the_timeout():
    buf = ReplayBuffer()
    t0 = time.monotonic()
    assert buf.sample(4, timeout_s=0.2) == []
    assert 0.15 <= time.monotonic() - t0 < 2.0


def test_sample_wakes_when_enough_arrive():
    buf = ReplayBuffer(BufferConfig(mode="fifo"))
    got = []
    t = threading.Thread(target=lambda: got.extend(buf.sample(2, timeout_s=10)))
    t.start()
    time.sleep(0.05)
    buf.add([exp(0)])
    time.sleep(0.05)
    assert got == []  # one is not enough for a batch of 2
    buf.add([exp(1)])
    t.join(timeout=5)
    assert [e.sample_id for e in got] == ["s0", "s1"]


def test_uniform_keeps_items_and_fifo_consumes():
    u = ReplayBuffer(BufferConfig(mode="uniform"), seed=1)
    u.add(exp(i) for i in range(4))
    assert len(u.sample(3)) == 3 and len(u) == 4
    f = ReplayBuffer(BufferConfig(mode="fifo"))
    f.add(exp(i) for i in range(4))
    f.sample(3)
    assert len(f) == 1 and f.stats().consumed == 3


def test_stats_age_and_outcome_mix():
    buf = ReplayBuffer(BufferConfig(max_staleness=10))
    buf.add([exp(0, 0, "pass"), exp(1, 2, "fail"), exp(2, 2, "fail")])
    buf.set_policy_version(3)
    st = buf.stats()
    # ages 3, 1, 1 -> mean 5/3
    assert st.mean_age == pytest.approx(5 / 3)
    assert st.outcomes == {"pass": 1, "fail": 2}


def test_state_round_trip_through_json_continues_identically():
    a = ReplayBuffer(BufferConfig(capacity=5, max_staleness=3, mode="uniform"), seed=7)
    a.add(exp(i, version=i % 2) for i in range(7))
    a.sample(2)
    state = json.loads(json.dumps(a.state_dict()))
    b = ReplayBuffer()
    b.load_state_dict(state)
    assert b.stats() == a.stats()
    # Same RNG state: the next draws agree.
    assert [e.sample_id for e in a.sample(3)] == [e.sample_id for e in b.sample(3)]


def test_a_state_saved_before_the_retired_fields_were_removed_still_loads():
    a = ReplayBuffer(seed=3)
    a.add(exp(i) for i in range(2))
    old = a.state_dict()
    old["items"] = [{**d, "returns": None, "reference_ids": None} for d in old["items"]]
    b = ReplayBuffer()
    b.load_state_dict(old)
    assert b.stats() == a.stats()
    old["items"][0]["returns"] = [0.5]  # a value the buffer can no longer hold: refused
    with pytest.raises(ValueError, match="returns"):
        ReplayBuffer().load_state_dict(old)


def test_misaligned_experience_is_rejected():
    with pytest.raises(ValueError, match="aligned"):
        Experience(task_id="t", sample_id="s", prompt_ids=[1], completion_ids=[1, 2],
                   token_rewards=[0.0], behaviour_logprobs=[0.0, 0.0], outcome="fail",
                   reward=0.0, policy_version=0)


def test_draw_gives_every_rank_an_equal_share_of_one_batch_or_nobody_anything():
    buf = ReplayBuffer(BufferConfig(capacity=16, max_staleness=1, mode="fifo"))
    buf.add(exp(i) for i in range(5))
    # 5 held, a batch of 6 is wanted: no rank gets a share, and nothing is taken
    assert buf.draw(6, parts=2) == [[], []] and len(buf) == 5
    buf.add([exp(5)])
    a, b = buf.draw(6, parts=2)  # fifo: oldest first, split in order
    assert [e.sample_id for e in a + b] == [f"s{i}" for i in range(6)] and len(a) == len(b)
    assert len(buf) == 0
    buf.add(exp(i, version=0) for i in range(4))
    buf.set_policy_version(2)  # version 0 is stale now: never drawn
    assert buf.draw(2) == [[]]
    with pytest.raises(ValueError, match="multiple of learner.ranks"):
        buf.draw(5, parts=2)


def test_a_group_judged_again_is_kept_once_and_the_copy_counted():
    # an executor that died after adding a group's experiences has the group judged again:
    # the second copy of each sample id is dropped, also across a checkpoint
    buf = ReplayBuffer(BufferConfig(capacity=2, mode="fifo"))
    assert buf.add([exp(0), exp(1)]) == 2
    assert buf.add([exp(1), exp(2)]) == 1  # s1 again: dropped; s2 pushes s0 out
    st = buf.stats()
    assert (st.size, st.added, st.dropped_duplicate, st.dropped_full) == (2, 3, 1, 1)
    assert [e.sample_id for e in buf.sample(2)] == ["s1", "s2"]  # consumed (fifo)
    assert buf.add([exp(0)]) == 0  # consumed or pushed out, an id stays known
    again = ReplayBuffer(BufferConfig(capacity=2, mode="fifo"))
    again.load_state_dict(buf.state_dict())
    assert again.add([exp(2), exp(3)]) == 1 and again.stats().dropped_duplicate == 3
    # the ids remembered are bounded: the last 4 * capacity added
    assert again.add(exp(i) for i in range(10, 30)) == 20
    assert again.add([exp(0)]) == 1
