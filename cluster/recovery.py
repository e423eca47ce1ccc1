"""What the training driver does when an actor's process dies, or the cluster cannot hold what
is asked of it, so that the run goes on without losing or repeating a result.

* A sampler that dies is replaced (`replace_sampler`); during a held-out evaluation
  the evaluation runs again once it is (`evaluate_safely`).
* The replay buffer, the weight store and the controller are restarted by Ray (see
  `cluster/topology.py`); they come back empty. `check_bookkeeping` notices, logs what was
  lost, gives the buffer its policy version again and gives the store the same version's
  weights again (kept by the driver), so the publish schedule does not move.
* The executor pool replaces its own actors (`cluster/executor_pool.py`); `report_waiting_executors`
  says when replacements or new executors wait for resources (a node was lost and no other
  has room), and `feasible_pool_size` keeps `rltf scale` and autoscaling within what the
  cluster and its autoscaler can hold.
* A learner rank that dies makes `cluster/train_cmd.py` rebuild the actors from the last
  checkpoint; `check_learner` notices it also while the driver waits for a batch. An actor
  that dies during that rebuild starts the next restart (`restart_until_built`), up to
  `train.restarts` in the run; then `RestartsExhausted` says what failed.
"""

from __future__ import annotations

from typing import Any, Callable


class RestartsExhausted(RuntimeError):
    """The run used every restart `train.restarts` allows; the message lists why each one
    was needed."""


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200] if text else ''}".rstrip(": ")


def restart_until_built(rebuild: Callable[[int, str], Any], restarts: int, limit: int,
                        why: str) -> tuple[Any, int]:
    """Restart the run after an actor died (`why`): `rebuild(n, why)` is restart number n
    (tearing down what is left and building the actors again from the last checkpoint).
    An actor killed during a rebuild (a RayActorError from it) starts the next one, so that
    a kill during a restart is survived as one during training; more than `limit` restarts
    in the run (`restarts` so far) raise RestartsExhausted. Returns (what `rebuild`
    returned, restarts so far)."""
    from ray.exceptions import RayActorError

    reasons = [why]
    while restarts < limit:
        restarts += 1
        try:
            return rebuild(restarts, why), restarts
        except RayActorError as err:
            why = f"{first_line(err)}, during restart {restarts}"
        reasons.append(why)
    raise RestartsExhausted(
        f"gave up after {restarts} restart(s) (train.restarts={limit}): "
        + "; then ".join(reasons) + ". Look for what kills the actors (`ray status`, the "
        "nodes' logs: memory, lost nodes), or raise train.restarts")


def is_dead(actor, timeout_s: float = 10.0) -> bool:
    """Whether a sampler actor is dead: a quick call fails. One that is busy or still starting
    (the call waits) counts as alive."""
    import ray
    from ray.exceptions import RayActorError

    ref = actor.version.remote()
    ready, _ = ray.wait([ref], timeout=timeout_s)
    if not ready:
        return False
    try:
        ray.get(ref)
        return False
    except RayActorError:
        return True


def evaluate_safely(trainer, topo, split: str = "val") -> float:
    """trainer.evaluate(topo, split), run again after replacing a sampler that died during it."""
    from ray.exceptions import RayActorError

    for attempt in range(3):
        try:
            return trainer.evaluate(topo, split)
        except RayActorError:
            dead = [i for i, s in enumerate(topo.samplers) if is_dead(s)]
            if not dead or attempt == 2:
                raise
            for i in dead:
                replace_sampler(trainer, topo, i)


def check_learner(topo) -> None:
    """Raise RayActorError once a learner rank is dead, also while the driver waits for a batch
    and calls no rank (a lost node: the samplers' replacements may not even fetch the weights
    that died with it, so no batch would ever come). A cheap call to each rank is kept in
    flight and looked at without waiting; a busy rank answers after its step."""
    import ray

    pings = topo.learner_pings
    if pings is None:
        topo.learner_pings = [a.step_count.remote() for a in topo.learner.actors]
        return
    ready, _ = ray.wait(pings, num_returns=len(pings), timeout=0)
    for ref in ready:
        ray.get(ref)  # a dead rank raises here: cluster/train_cmd.py restarts the run
    if len(ready) == len(pings):
        topo.learner_pings = None


def check_bookkeeping(trainer, topo) -> None:
    """After Ray restarted the buffer or the weight store (empty): say what was lost, give the
    buffer its policy version again and the store the current version's weights again (the
    same ones: `PolicyVersions.resend`)."""
    import ray

    log = trainer.log.print
    if ray.get(topo.buffer.restarted.remote()):
        trainer.buffer_restarts += 1
        trainer.experiences_lost += trainer.buffer_size_seen
        log(f"[step {trainer.step}] the replay buffer's process died and Ray restarted it "
            f"empty ({trainer.buffer_size_seen} buffered experiences lost); training goes on "
            "with new ones")
        trainer.buffer_size_seen = 0
        ray.get(topo.buffer.set_policy_version.remote(trainer.version))
    if not ray.get(topo.store.restarted.remote()):
        return
    trainer.store_restarts += 1
    versions = trainer.versions
    died = f"[step {trainer.step}] the weight store's process died and Ray restarted it"
    if versions.version == 0:  # nothing published yet: the samplers hold the start
        log(f"{died}; nothing was published yet, nothing is lost")
        return
    if ray.get(topo.store.latest_version.remote()) >= versions.version:
        log(f"{died}; it holds version {versions.version} already (a publish reached it "
            "after the restart: Ray runs again the one it died in)")
        return
    again = versions.resend()
    if again is None:
        log(f"{died} empty; the driver holds no copy of version {versions.version}, so the "
            "store stays empty until the next publish (samplers keep the weights they hold)")
        return
    log(f"{died} empty; giving it version {versions.version} again (the weights of step "
        f"{versions.published_step}; the publish schedule is unchanged)")
    ray.get(topo.store.publish.remote(*again))


def feasible_pool_size(trainer, want: int, size: int, request: tuple[int, int] | None) -> int:
    """The executor pool size to grow to from `size`: `want` if the cluster and its autoscaler
    can hold it beside the rest of the run. Otherwise an `rltf scale` request is refused (the
    reason goes to the controller's status, which `rltf scale` prints) and autoscaling stops
    at the largest size that fits."""
    from cluster.controller import largest_feasible

    fit, reason = largest_feasible(trainer.cfg, want, size)
    if fit >= want:
        return want
    if request is not None:
        trainer.refused_request = (request[0], f"{want} executors do not fit: {reason}")
        trainer.log.print(f"[step {trainer.step}] rltf scale asked for {want} executors; kept "
                          f"{size}: {reason}")
        return size
    if fit != trainer.pool_cap_logged:
        trainer.pool_cap_logged = fit
        trainer.log.print(f"[step {trainer.step}] autoscaling wants {want} executors; the "
                          f"cluster holds {fit}: {reason}")
    return fit


def report_waiting_executors(trainer) -> None:
    """Log the executors that wait for resources (no silent waits)."""
    from cluster.startup import waiting_actors

    waiting = waiting_actors("rltf-executor")
    if waiting:
        trainer.log.print(f"[step {trainer.step}] {len(waiting)} executor actors wait for "
                          f"resources ({', '.join(waiting[:4])}): their programs wait with "
                          "them until the cluster has room (`ray status` shows the demand)")


def replace_sampler(trainer, topo, idx: int) -> None:
    from cluster.topology import new_sampler

    if not is_dead(topo.samplers[idx]):  # replaced already (a second call that failed)
        return
    trainer.sampler_restarts += 1
    trainer.log.print(f"sampler {idx} died; starting a replacement (it fetches version "
                      f"{trainer.version})")
    # Ray keeps a dead actor's name taken while a handle to it lives: drop ours first
    topo.samplers[idx] = None
    topo.samplers[idx] = new_sampler(trainer.cfg, trainer.model_path, idx)
    if trainer.cfg.weights.transport == "collective":
        # the broadcast group's size is fixed when it is formed: form it again with the
        # replacement (which has fetched the latest version from the weight store)
        from cluster.topology import collective_backend, connect_collective

        connect_collective(topo.learner, topo.samplers, collective_backend(trainer.cfg))
