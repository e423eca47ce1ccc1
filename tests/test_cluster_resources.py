"""What a run asks of a Ray cluster and whether the cluster (and its autoscaler) can give it
(pure, no Ray); the token a client would send and the one line a refusal gives."""

from __future__ import annotations

import math

import pytest

from cluster.auth import auth_headers, explain_refusal, local_problem, token_source
from core.config_reading import load_config
from cluster.metrics import Totals
from cluster.resources import NodeType, demands, node_types_from_config, pending, shortfalls
from cluster.train_cmd import DEFAULT_CONFIG

GB = 1024 ** 3


def test_demands_of_the_embedded_default_fit_a_2_cpu_head():
    cfg = load_config(DEFAULT_CONFIG)
    dem = demands(cfg)
    # sampler, executor and learner rank reserve 0.5 CPU each; the buffer, weight store and
    # controller reserve nothing, so they are not listed
    assert [(d.what, d.count, d.bundle) for d in dem] == [
        ("sampler", 1, {"CPU": 0.5}), ("executor", 1, {"CPU": 0.5}),
        ("learner rank", 1, {"CPU": 0.5})]
    head = [{"CPU": 2.0, "memory": 16 * GB}]
    assert shortfalls(dem, head) == []
    # 0.5 * 3 = 1.5 CPUs, so one more executor fits (`rltf scale executors 2`), two do not
    assert shortfalls(demands(cfg, executors=2), head) == []
    assert shortfalls(demands(cfg, executors=3), head)


def test_each_missing_resource_is_named_with_the_settings_that_change_it():
    cfg = load_config(None, ["sampler.gpus_per_actor=1", "learner.gpus_per_rank=1",
                             "learner.ranks=2", "learner.batch_size=32", "buffer.min_fill=32",
                             "executor.workers=4", "executor.resources={executor_node: 1}"])
    lines = shortfalls(demands(cfg), [{"CPU": 2.0}])
    text = "\n".join(lines)
    # CPU: 1 sampler + 4 executors + 2 ranks = 7 > 2
    assert any(x.startswith("CPU: needs 7 ") and "the cluster has 2" in x for x in lines), text
    # GPU: 1 + 2 = 3, none anywhere
    gpu = next(x for x in lines if x.startswith("GPU:"))
    assert "needs 3" in gpu and "no node has GPU" in gpu
    assert "sampler.gpus_per_actor" in gpu and "learner.gpus_per_rank" in gpu
    ex = next(x for x in lines if x.startswith("executor_node:"))
    assert "needs 4" in ex and "executor.resources" in ex and "ray start --resources" in ex
    assert len(lines) == 3


def test_an_actor_larger_than_any_node_is_named_even_when_the_total_suffices():
    cfg = load_config(None, ["learner.cpus_per_rank=3"])
    # 1 + 2 + 3 = 6 CPUs in all, on two nodes of 4: the 3-CPU rank and the executors and the
    # sampler fit (3 | 1+2); a 5-CPU rank fits on neither
    nodes = [{"CPU": 4.0}, {"CPU": 4.0}]
    assert shortfalls(demands(cfg), nodes) == []
    cfg = load_config(None, ["learner.cpus_per_rank=5"])
    (line,) = shortfalls(demands(cfg), nodes)
    assert line.startswith("1 learner rank: each asks for {CPU: 5}")
    assert "learner.cpus_per_rank" in line and "{CPU: 4}" in line


def test_the_autoscaler_node_types_count_as_room():
    cfg = load_config(None, ["executor.workers=6", "executor.resources={executor_node: 1}"])
    head = [{"CPU": 2.0}]
    types = [NodeType("cpu", {"CPU": 8.0, "executor_node": 4.0}, 1)]
    # 6 executors need 6 executor_node; one more node of 4 is not enough
    (line,) = shortfalls(demands(cfg), head, types)
    assert line.startswith("executor_node: needs 6") and "its autoscaler can add 4" in line
    types = [NodeType("cpu", {"CPU": 8.0, "executor_node": 4.0}, 2)]
    assert shortfalls(demands(cfg), head, types) == []
    # but nothing of it is free now: all 6 executors wait for the autoscaler's nodes
    assert pending(demands(cfg), [{"CPU": 2.0}]) == ["6 executors x {CPU: 1, executor_node: 1}"]


def test_autoscaler_groups_from_the_cluster_config():
    groups = [("head", {"CPU": 2}, 0), ("cpu", {"CPU": 8, "executor_node": 8}, 10),
              ("gpu", {"CPU": 8, "GPU": 1}, -1)]
    types = node_types_from_config(groups, {"cpu": 3})
    assert [(t.name, t.max_more) for t in types] == [("cpu", 7), ("gpu", math.inf)]


def test_memory_is_reserved_in_bytes_and_reported_in_gib():
    cfg = load_config(None, ["learner.memory_gb=64"])
    rank = next(d for d in demands(cfg) if d.what == "learner rank")
    assert rank.bundle["memory"] == 64 * GB
    (line,) = shortfalls(demands(cfg), [{"CPU": 8.0, "memory": 32 * GB}])
    assert line.startswith("memory: needs 64 GiB") and "learner.memory_gb" in line


def test_counter_totals_never_go_down():
    t = Totals()
    assert t.delta("stale", 10) == 10  # first read: all of it
    assert t.delta("stale", 66) == 56
    # restored from a checkpoint taken at 10 (the "value must be >0, got -56")
    assert t.delta("stale", 10) == 0
    assert t.delta("stale", 15) == 5
    assert t.delta("stale", 0) == 0  # the buffer was restarted empty
    assert t.delta("stale", 3) == 3


def test_the_token_is_found_where_ray_looks(tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("abc\n")
    assert token_source({}, home).token == "abc"
    other = tmp_path / "t"
    other.write_text("def")
    src = token_source({"RAY_AUTH_TOKEN_PATH": str(other)}, home)
    assert (src.token, src.where) == ("def", f"RAY_AUTH_TOKEN_PATH={other}")
    assert token_source({"RAY_AUTH_TOKEN": "ghi", "RAY_AUTH_TOKEN_PATH": str(other)},
                        home).token == "ghi"
    missing = token_source({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "nope")}, home)
    assert missing.token is None and "does not exist or is empty" in missing.problem
    assert token_source({}, tmp_path / "empty").token is None


def test_a_refusal_is_one_line_that_says_which_and_how_to_fix_it(tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("abc")
    addr = "10.0.0.1:6379"
    no_mode = explain_refusal(addr, {"HOME": str(home)}, home)
    assert "requires its authentication token and this client sends none" in no_mode
    assert "RAY_AUTH_MODE=token" in no_mode and str(home / ".ray" / "auth_token") in no_mode
    wrong = explain_refusal(addr, {"RAY_AUTH_MODE": "token", "HOME": str(home)}, home)
    assert "refused the token from" in wrong and "ray get-auth-token" in wrong
    none = explain_refusal(addr, {"RAY_AUTH_MODE": "token"}, tmp_path / "empty")
    assert none.startswith("RAY_AUTH_MODE=token but no token was found")
    for line in (no_mode, wrong, none):
        assert "\n" not in line
    bad_path = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "nope")}
    assert "does not exist or is empty" in local_problem(bad_path)
    assert local_problem({"RAY_AUTH_TOKEN": "x", "RAY_AUTH_MODE": "token"}) is None


def test_dashboard_requests_carry_the_token_only_in_token_mode():
    assert auth_headers({"RAY_AUTH_TOKEN": "abc", "RAY_AUTH_MODE": "token"}) == {
        "Authorization": "Bearer abc"}
    assert auth_headers({"RAY_AUTH_TOKEN": "abc"}) == {}


@pytest.mark.parametrize("key", ["sampler.resources", "learner.resources"])
def test_custom_resources_of_samplers_and_ranks_are_demanded(key):
    cfg = load_config(None, [f"{key}={{gpu_node: 1}}"])
    what = "sampler" if key.startswith("sampler") else "learner rank"
    d = next(d for d in demands(cfg) if d.what == what)
    assert d.bundle["gpu_node"] == 1 and d.settings["gpu_node"] == key


def test_only_an_autoscaler_with_named_node_types_counts_as_one_that_adds_nodes():
    from cluster.startup import adds_nodes

    anon = "node_" + "ab12" * 14  # a plain head's read-only monitor: types named after nodes
    assert not adds_nodes(None) and not adds_nodes({})
    assert not adds_nodes({"active_nodes": {anon: 1}, "idle_nodes": {anon: 1},
                           "pending_launches": {}, "pending_nodes": [], "failed_nodes": []})
    assert adds_nodes({"active_nodes": {"ray.head.default": 1}, "pending_launches": {}})
    assert adds_nodes({"active_nodes": {anon: 1}, "pending_launches": {"executor": 1}})
    assert adds_nodes({"active_nodes": {}, "pending_nodes": [["127.0.0.1", "gpu", "setting-up"]]})
