"""Shared fixtures. Executor tests share one worker (one fork-server) per module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def worker():
    from executor.worker import Worker

    w = Worker()
    yield w
    w.close()
