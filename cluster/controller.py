"""Control of a running job from outside: the named actor `rltf-driver`, and the executor
pool's autoscaling policy.

    rltf scale executors 8 --address 127.0.0.1:6379   # asks the driver of the running job

The training driver creates the actor at start (in the Ray namespace `rltf`), reports its
status to it every second and applies the requests it holds: `rltf scale` leaves a request
and waits until the driver's status shows the new pool size, or that the driver refused it
(more executors than the cluster and its autoscaler can hold; the reason is printed). The
policy is a pure function so that it is tested without Ray: the pool grows when programs wait
for a free executor and shrinks when executors sit idle, between a minimum and a maximum, at
most once per cooldown, and never past what the cluster and its autoscaler can hold. With a
Ray autoscaler, the new executor actors' resource requests bring up new executor nodes.
"""

from __future__ import annotations

import math
import time

from core.config import ExecutorConfig

CONTROLLER_NAME = "rltf-driver"
NAMESPACE = "rltf"


class Controller:
    """The driver's mailbox and status board (a small named Ray actor, no CPU reserved)."""

    def __init__(self) -> None:
        self._request: tuple[int, int] | None = None  # (request id, executors wanted)
        self._seq = 0
        self._status: dict = {}

    def scale_executors(self, n: int) -> int:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"the executor pool needs at least 1 actor (asked for {n!r})")
        self._seq += 1
        self._request = (self._seq, n)
        return self._seq

    def take_request(self) -> tuple[int, int] | None:
        req, self._request = self._request, None
        return req

    def report(self, status: dict) -> None:
        self._status = dict(status)

    def status(self) -> dict:
        return dict(self._status)


def autoscale(policy: ExecutorConfig, size: int, queue_depth: int, busy: int,
              since_change_s: float) -> int:
    """The pool size the policy wants now: the run's executor section as is (min_workers,
    max_workers, target_queue_per_worker, autoscale_cooldown_s).

    Grow when more than `target_queue_per_worker` programs per executor wait for one: to the
    size at which the waiting programs would be at target (at most the maximum). Shrink by one
    when nothing waits and at least two executors are idle (at least the minimum). Otherwise,
    or within the cooldown after a change, keep the size."""
    lo, hi = policy.min_workers, policy.max_workers
    if size < lo:
        return lo
    if size > hi:
        return hi
    if since_change_s < policy.autoscale_cooldown_s:
        return size
    if queue_depth > policy.target_queue_per_worker * size and size < hi:
        return min(hi, max(size + 1, math.ceil(queue_depth / policy.target_queue_per_worker)))
    if queue_depth == 0 and size - busy >= 2 and size > lo:
        return size - 1
    return size


def get_or_create_controller():
    """The job's controller actor, in the job's namespace (`rltf` for `rltf train`). Ray
    restarts it if its process dies; the driver reports its status again within a second."""
    import ray

    from cluster.topology import RESTARTABLE

    return ray.remote(Controller).options(name=CONTROLLER_NAME, get_if_exists=True,
                                          **RESTARTABLE).remote()


def refuse_second_job(namespace: str) -> None:
    """RuntimeError if another rltf job already runs in this namespace (its controller lives:
    it dies with the driver that made it)."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    try:
        ctl = ray.get_actor(CONTROLLER_NAME, namespace=namespace)
        last = ray.get(ctl.status.remote(), timeout=10).get("time")
    except (ValueError, RayActorError):  # none, or one being stopped (ray.kill is async)
        return
    except GetTimeoutError:
        last = None
    if last is not None and time.time() - last > 60:  # its driver stopped reporting long ago
        return
    from cluster.startup import StartupError

    raise StartupError(f"another rltf job is running in Ray namespace {namespace!r} on this "
                       f"cluster (its actor {CONTROLLER_NAME} is alive): give this one another "
                       "cluster.namespace")


def largest_feasible(cfg, want: int, current: int) -> tuple[int, str]:
    """The largest executor pool size <= `want` (and >= `current`) that the cluster and its
    autoscaler can hold beside the rest of the run, and why `want` could not be had ("")."""
    from cluster.startup import ResourceError, check_resources

    if want <= current:
        return want, ""
    try:
        check_resources(cfg, executors=want)
        return want, ""
    except ResourceError as err:
        reason = str(err).split("\n", 1)[-1].strip()
    lo, hi = current, want  # current always fits: its actors run
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            check_resources(cfg, executors=mid)
            lo = mid
        except ResourceError:
            hi = mid
    return lo, reason


def scale_executors(n: int, address: str | None, timeout_s: float = 120.0,
                    namespace: str = NAMESPACE, log=print) -> int:
    """`rltf scale executors N`: asks the running job's driver and waits until it is done."""
    import ray

    started = False
    if not ray.is_initialized():
        from cluster.auth import check_cluster_access, resolve_address

        resolved = resolve_address(address or "auto")
        check_cluster_access(resolved)
        ray.init(address=resolved, namespace=namespace, log_to_driver=False,
                 logging_level="WARNING")
        started = True
    try:
        try:
            ctl = ray.get_actor(CONTROLLER_NAME, namespace=namespace)
        except ValueError:
            raise RuntimeError(f"no running rltf job on this cluster (no actor named "
                               f"{CONTROLLER_NAME!r} in namespace {namespace!r})") from None
        req = ray.get(ctl.scale_executors.remote(int(n)))
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            st = ray.get(ctl.status.remote())
            refused = st.get("refused_request") or (0, "")
            if refused[0] >= req:
                log(f"the driver kept the executor pool at {st.get('executor_pool_size')} "
                    f"actors: {refused[1]}")
                return 1
            if st.get("applied_request", 0) >= req and st.get("executor_pool_size") == n:
                log(f"executor pool resized to {n} actors (step {st.get('step')})")
                return 0
            time.sleep(0.5)
        log(f"asked for {n} executors, but the driver has not applied it within {timeout_s:.0f}s "
            f"(status: {ray.get(ctl.status.remote())})")
        return 1
    finally:
        if started:
            ray.shutdown()


def apply_control(trainer, topo) -> None:
    """Apply a pending `rltf scale` request, else the autoscaling policy; report status."""
    import ray

    from cluster.recovery import (check_bookkeeping, check_learner, feasible_pool_size,
                                  report_waiting_executors)

    check_bookkeeping(trainer, topo)
    check_learner(topo)
    ex, pool = trainer.cfg.executor, topo.pool
    now = time.time()
    if now - trainer.last_wait_check >= 30:
        trainer.last_wait_check = now
        report_waiting_executors(trainer)
    want, why = pool.size, ""
    req = ray.get(topo.controller.take_request.remote()) if topo.controller else None
    if req is not None:
        trainer.applied_request, want = req
        why = "rltf scale"
    elif ex.autoscale:
        want = autoscale(ex, pool.size, pool.queue_depth(), pool.busy_workers(),
                         now - trainer.last_resize)
        why = f"autoscaling (queue {pool.queue_depth()}, busy {pool.busy_workers()})"
    if want > pool.size:  # only as many as the cluster (and its autoscaler) can hold
        want = feasible_pool_size(trainer, want, pool.size, req)
    if want != pool.size:
        old = pool.size
        pool.resize(want)
        trainer.last_resize = now
        trainer.log.print(f"[step {trainer.step}] executor pool {old} -> {pool.size} actors "
                          f"({why})")
    if topo.controller is not None:
        topo.controller.report.remote({
            "step": trainer.step, "policy_version": trainer.version,
            "executor_pool_size": pool.size, "executor_queue_depth": pool.queue_depth(),
            "executor_busy_workers": pool.busy_workers(),
            "applied_request": trainer.applied_request, "samplers": len(topo.samplers),
            "refused_request": trainer.refused_request,
            "programs_judged": trainer.programs_judged, "time": now})


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="rltf scale", description="Resize a running job's "
                                 "executor pool (through its named controller actor).")
    ap.add_argument("what", choices=["executors"])
    ap.add_argument("n", type=int, help="executor actors wanted (>= 1)")
    ap.add_argument("--address", default=None,
                    help="Ray cluster address, e.g. 127.0.0.1:6379 (default: auto). With "
                    "token authentication, export RAY_AUTH_MODE=token and have the cluster's "
                    "token in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN")
    ap.add_argument("--namespace", default=NAMESPACE,
                    help="Ray namespace of the job (rltf train uses 'rltf')")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("n must be at least 1")
    from cluster.auth import ClusterAccessError

    try:
        return scale_executors(args.n, args.address, args.timeout, args.namespace)
    except (RuntimeError, ClusterAccessError) as err:
        print(f"rltf scale: {err}")
        return 2
