"""What rewritten test code calls (see `executor.testcode`), kept apart from the rewriting.

The sandbox harness imports this module, and the fork-server's zygote holds it in memory, so
it stays small: no `ast`, no dataclasses.
"""

from __future__ import annotations

import random as _random
import types

PROG = "__rltf_prog__"
ASSERT = "__rltf_assert__"
JUDGE = "__rltf_judge__"
RANDOM = "__rltf_random__"


class _PrivateRandom(types.ModuleType):
    """A module-like `random` whose functions draw from one private, seeded generator."""

    def __init__(self, seed: object):
        super().__init__("random")
        self._seed = seed
        self._gen = None  # seeded on first use: most tests never draw

    def __getattr__(self, name: str):  # called only for names not set on the instance
        if not name.startswith("_") and name not in ("Random", "SystemRandom"):
            if self._gen is None:
                self._gen = _random.Random(self._seed)
            attr = getattr(self._gen, name, None)
            if callable(attr):
                return attr
        return getattr(_random, name)


def make_random(seed: object) -> types.ModuleType:
    return _PrivateRandom(seed)
