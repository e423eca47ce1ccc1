"""The online replay buffer: complete experiences, newest kept, staleness bounded.

    buf = ReplayBuffer(BufferConfig(capacity=6400, max_staleness=4), seed=0)
    buf.add(experiences)                  # oldest out first when full
    buf.set_policy_version(7)             # experiences made before version 3 are now stale
    batch = buf.sample(32, timeout_s=5)   # never blocks longer than timeout_s
    shares = buf.draw(32, parts=2)        # a whole batch in one share per rank, or none

RLTF keeps the newest 6400 samples and trains on batches drawn from them. Two ways to draw:
`uniform` (with replacement; experiences stay until evicted or stale, as in the paper's
online buffer) and `fifo` (each experience is trained on once, oldest first). An experience
whose policy version is more than `max_staleness` versions behind the current one is
dropped and counted, never returned. An experience whose sample id the buffer was given
before is dropped and counted (`dropped_duplicate`): an executor that died after adding a
group's experiences and before answering has its group judged again by another, and the
buffer keeps the first copy only (it remembers the last `4 * capacity` sample ids added, far
more than a group judged again can lag behind). A plain class: `cluster/` wraps it as the `rltf-buffer`
actor, and tests use it in-process.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from core.config import BufferConfig


@dataclass
class Experience:
    """One judged sample, ready for the learner. Token lists are aligned with
    `completion_ids` (one entry per generated token)."""

    task_id: str
    sample_id: str
    prompt_ids: list[int]
    completion_ids: list[int]
    token_rewards: list[float]
    behaviour_logprobs: list[float]
    outcome: str
    reward: float
    policy_version: int
    passed: int = 0
    total: int = 0
    is_greedy: bool = False

    def __post_init__(self) -> None:
        n = len(self.completion_ids)
        if len(self.token_rewards) != n or len(self.behaviour_logprobs) != n:
            raise ValueError(
                f"experience {self.sample_id}: {n} completion tokens but "
                f"{len(self.token_rewards)} token rewards and {len(self.behaviour_logprobs)} "
                "behaviour log-probs; they must be aligned one per generated token")


@dataclass
class BufferStats:
    size: int
    capacity: int
    policy_version: int
    added: int
    consumed: int
    dropped_full: int
    dropped_stale: int
    mean_age: float  # in policy versions, over what is held now
    outcomes: dict[str, int] = field(default_factory=dict)  # outcome mix of what is held
    dropped_duplicate: int = 0  # experiences whose sample id was added before


class ReplayBuffer:
    """The run's `buffer` section as is (`core.config.BufferConfig`: capacity, max_staleness,
    mode; min_fill is the driver's); `seed` drives the uniform draws."""

    def __init__(self, cfg: BufferConfig | None = None, seed: int = 0):
        cfg = cfg or BufferConfig()
        self.capacity = cfg.capacity
        self.max_staleness = cfg.max_staleness
        self.mode = cfg.mode
        self._items: collections.deque[Experience] = collections.deque()
        self._rng = random.Random(seed)
        self._cond = threading.Condition()
        self._version = 0
        self._added = self._consumed = self._dropped_full = self._dropped_stale = 0
        self._dropped_duplicate = 0
        self._seen: set[str] = set()  # the sample ids added lately, oldest first in _seen_order
        self._seen_order: collections.deque[str] = collections.deque()

    # -- writing -------------------------------------------------------------------------
    def add(self, experiences: Iterable[Experience]) -> int:
        """Add experiences (stale ones and ones whose sample id was added before are dropped
        at once); returns how many were kept."""
        kept = 0
        with self._cond:
            for exp in experiences:
                if exp.sample_id in self._seen:
                    self._dropped_duplicate += 1
                    continue
                self._remember(exp.sample_id)
                self._added += 1
                if self._is_stale(exp):
                    self._dropped_stale += 1
                    continue
                if len(self._items) >= self.capacity:
                    self._items.popleft()
                    self._dropped_full += 1
                self._items.append(exp)
                kept += 1
            if kept:
                self._cond.notify_all()
        return kept

    def set_policy_version(self, version: int) -> int:
        """Advance the current policy version; drops what became stale, returns how many."""
        with self._cond:
            if version < self._version:
                raise ValueError(f"policy version went back from {self._version} to {version}")
            self._version = version
            return self._evict_stale()

    # -- reading -------------------------------------------------------------------------
    def sample(self, batch_size: int, timeout_s: float = 0.0, min_size: int | None = None
               ) -> list[Experience]:
        """Up to `batch_size` experiences. Waits at most `timeout_s` for `min_size` (default:
        batch_size) to be available, then returns what there is (possibly nothing)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 (got {batch_size})")
        need = batch_size if min_size is None else max(1, min(min_size, batch_size))
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while True:
                self._evict_stale()
                if len(self._items) >= need:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._items:
                return []
            if self.mode == "fifo":
                take = min(batch_size, len(self._items))
                batch = [self._items.popleft() for _ in range(take)]
            else:
                k = min(batch_size, len(self._items))
                idx = self._rng.sample(range(len(self._items)), k)
                batch = [self._items[i] for i in idx]
            self._consumed += len(batch)
            return batch

    def draw(self, batch_size: int, parts: int = 1) -> list[list[Experience]]:
        """A whole batch of `batch_size` as `parts` equal shares, in order (one per learner
        rank), or `parts` empty lists when fewer are held: the ranks of one optimizer step
        all get a share or all get none, and nothing is taken for a batch that is not made."""
        if batch_size < 1 or parts < 1 or batch_size % parts:
            raise ValueError(f"a batch of {batch_size} does not split into {parts} equal "
                             "shares; learner.batch_size must be a multiple of learner.ranks")
        with self._cond:
            self._evict_stale()
            if len(self._items) < batch_size:
                return [[] for _ in range(parts)]
            batch = self.sample(batch_size)
        per = batch_size // parts
        return [batch[i * per:(i + 1) * per] for i in range(parts)]

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def stats(self) -> BufferStats:
        with self._cond:
            ages = [self._version - e.policy_version for e in self._items]
            return BufferStats(
                size=len(self._items), capacity=self.capacity, policy_version=self._version,
                added=self._added, consumed=self._consumed, dropped_full=self._dropped_full,
                dropped_stale=self._dropped_stale,
                mean_age=sum(ages) / len(ages) if ages else 0.0,
                outcomes=dict(collections.Counter(e.outcome for e in self._items)),
                dropped_duplicate=self._dropped_duplicate,
            )

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        with self._cond:
            return {
                "capacity": self.capacity, "max_staleness": self.max_staleness,
                "mode": self.mode, "version": self._version,
                "items": [asdict(e) for e in self._items],
                "counters": [self._added, self._consumed, self._dropped_full,
                             self._dropped_stale],
                "rng": self._rng.getstate(),
                "seen": list(self._seen_order), "dropped_duplicate": self._dropped_duplicate,
            }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with self._cond:
            self.capacity = state["capacity"]
            self.max_staleness = state["max_staleness"]
            self.mode = state["mode"]
            self._version = state["version"]
            self._items = collections.deque(Experience(**_current_fields(d))
                                            for d in state["items"])
            (self._added, self._consumed, self._dropped_full,
             self._dropped_stale) = state["counters"]
            rng_state = state["rng"]
            if isinstance(rng_state, list):  # tuples become lists through JSON
                rng_state = (rng_state[0], tuple(rng_state[1]), rng_state[2])
            self._rng.setstate(rng_state)
            self._seen, self._seen_order = set(), collections.deque()
            for sid in state.get("seen", [e.sample_id for e in self._items]):
                self._remember(sid)
            self._dropped_duplicate = state.get("dropped_duplicate", 0)
            self._cond.notify_all()

    # -- internals -------------------------------------------------------------------------
    def _remember(self, sample_id: str) -> None:
        self._seen.add(sample_id)
        self._seen_order.append(sample_id)
        while len(self._seen_order) > 4 * self.capacity:
            self._seen.discard(self._seen_order.popleft())

    def _is_stale(self, exp: Experience) -> bool:
        return self._version - exp.policy_version > self.max_staleness

    def _evict_stale(self) -> int:
        before = len(self._items)
        if before and any(self._is_stale(e) for e in self._items):
            self._items = collections.deque(e for e in self._items if not self._is_stale(e))
        dropped = before - len(self._items)
        self._dropped_stale += dropped
        return dropped


# Fields that experiences once had and that nothing ever set (always None); checkpoints written
# before they were removed still hold them.
_RETIRED = ("returns", "reference_ids")


def _current_fields(d: dict[str, Any]) -> dict[str, Any]:
    """An experience's saved fields without the retired ones (refused if one held a value)."""
    held = [k for k in _RETIRED if d.get(k) is not None]
    if held:
        raise ValueError(f"experience {d.get('sample_id')!r} in this buffer state sets "
                         f"{held}, which experiences no longer have")
    return {k: v for k, v in d.items() if k not in _RETIRED}
