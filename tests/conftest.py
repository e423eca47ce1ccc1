"""Shared fixtures. Executor tests share one worker (one fork-server) per module."""

from __future__ import annotations

import os
import socket

import pytest


@pytest.fixture(scope="module")
def worker():
    from executor.worker import Worker

    w = Worker()
    yield w
    w.close()


@pytest.fixture(scope="session")
def tiny_families(tmp_path_factory):
    """family name -> folder of a tiny model of that family (codet5, llama, qwen2), built once
    per test session (about 6 s)."""
    from tiny_models import FAMILY_NAMES, make_family

    root = tmp_path_factory.mktemp("families")
    return {f: make_family(f, root / f) for f in FAMILY_NAMES}


_DIST_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")


@pytest.fixture(scope="module")
def single_rank():
    """torch.distributed rendezvous for one process, as LearnerRank.start sets it, so that
    PolicyEngine (DeepSpeed on gloo) runs in the test process; torn down after the module."""
    pytest.importorskip("deepspeed")
    import torch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    saved = {k: os.environ.get(k) for k in _DIST_ENV}
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0",
                      WORLD_SIZE="1", LOCAL_RANK="0")
    torch.set_num_threads(1)
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    # DeepSpeed caches process groups of the destroyed world (its clone of the world group
    # first); the next module's engines must build new ones.
    from deepspeed.utils import groups

    for name, value in list(vars(groups).items()):
        if name.startswith("_") and name.endswith(("_GROUP", "_GROUP_RANKS")):
            setattr(groups, name, {} if isinstance(value, dict) else None)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """One warm-start cache (model.cache_dir) for the integration tests that train the tiny
    model with the same small settings: the first of them builds it, the others reuse it."""
    return tmp_path_factory.mktemp("tiny-cache")


# Modules that start Ray clusters of their own with several nodes (`ray start` heads and
# workers, ray.cluster_utils.Cluster): under `pytest -n 2 --dist loadfile` each worker takes
# whole modules, and these two never run beside each other.
_CLUSTER_MODULES = {"test_cluster_job", "test_cluster_nodes"}


@pytest.fixture(scope="module", autouse=True)
def _one_cluster_module_at_a_time(request, tmp_path_factory):
    """A lock shared by the pytest workers of one run (their base temp folders share a
    parent), held while a multi-node cluster module runs."""
    if request.module.__name__.rsplit(".", 1)[-1] not in _CLUSTER_MODULES:
        yield
        return
    import fcntl

    with open(tmp_path_factory.getbasetemp().parent / "rltf-ray-clusters.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# The longest modules first (measured in CI), so that the two pytest workers end together
# instead of one finishing a long module alone at the end.
_LONGEST_FIRST = ["test_cluster_nodes", "test_presets_tiny", "test_train_chaos",
                  "test_train_cli", "test_weight_sync", "test_cluster_job",
                  "test_learner_group", "test_executor_pool_ray", "test_reference_zero3",
                  "test_learner_resume", "test_gen_tests", "test_model_source"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}

    def key(item):
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        return rank.get(module, len(rank))

    items.sort(key=key)  # stable: the order inside a module and among the rest is kept
