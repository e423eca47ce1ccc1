"""One pydantic config tree for every part of rltf: a section per component, `RLTFConfig` the
whole.

Every setting is documented once, in its `Field(description=...)`; each component takes its
own section as is. Reading a config (YAML, `section.key=value` overrides, every problem listed
at once in a `ConfigError`) is `core/config_reading.py`; the checks across settings, which
`RLTFConfig` runs once its fields are valid, are `core/checks.py`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from core.checks import Conflicts, conflicts


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ExecutorConfig(Section):
    """The sandboxed unit-test executor and its pool of workers."""

    workers: int = Field(
        default=2, ge=1,
        description="Executor workers (Ray actors with --ray); each runs one program at a time "
        "in its own fork-server. One per CPU core is a good start.",
    )
    cpus_per_worker: float = Field(
        default=1.0, gt=0, description="CPUs Ray reserves for each executor actor."
    )
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Extra Ray custom resources each executor actor asks for, e.g. "
        "{executor_node: 1}, so that executors land on CPU-only node types.",
    )
    time_limit_s: float = Field(
        default=4.0, gt=0,
        description="Time limit for one unit test, unless the problem sets time_limit_s: the "
        "CPU time of the program's process (its threads included), so that a busy machine "
        "does not time out a fast program (wall-clock time where the sandbox cannot read "
        "it); see also wall_limit_factor.",
    )
    wall_limit_factor: float = Field(
        default=3.0, ge=1.0,
        description="A unit test also times out when its wall-clock time exceeds its time "
        "limit times this: programs that sleep or wait use no CPU, and work done in processes "
        "a program starts is held by this limit alone.",
    )
    program_budget_s: float = Field(
        default=30.0, gt=0,
        description="Wall-clock budget for all the tests of one program; tests not started "
        "when it runs out are failed as not run.",
    )
    memory_mb: int = Field(
        default=2048, ge=64, description="Address-space limit (RLIMIT_AS) of a program, in MiB."
    )
    output_limit_kb: int = Field(
        default=4096, ge=1,
        description="Cap on what one test may print (stdout and stderr together), in KiB; "
        "a program that prints more is stopped with outcome output_limit.",
    )
    file_size_mb: int = Field(
        default=16, ge=1, description="Largest file a program may write (RLIMIT_FSIZE), in MiB."
    )
    max_open_files: int = Field(
        default=64, ge=16, description="Open file descriptors a program may hold (RLIMIT_NOFILE)."
    )
    max_processes: int = Field(
        default=16, ge=1,
        description="Processes and threads a program may run at once (RLIMIT_NPROC, per "
        "sandbox user); it stops fork bombs.",
    )
    isolation: Literal["auto", "strict", "minimal"] = Field(
        default="auto",
        description="auto: the strongest sandbox this kernel allows (namespaces, separate "
        "user); strict: refuse to start unless network and file-system isolation and a "
        "separate user are all in place; minimal: rlimits and process groups only.",
    )
    uid_base: int = Field(
        default=61000, ge=1000,
        description="When started as root, programs run as the first free UID at or above "
        "this one (one UID per worker slot).",
    )
    pin_cpus: bool = Field(
        default=True,
        description="Run each worker's sandbox (its fork-server's zygote and every program "
        "forked from it) on one CPU, the one that the fewest other fork-servers of the host "
        "hold: a "
        "program starts where the memory it shares with the zygote is cached, and no core "
        "idles while a fork hands over to its child (about 15% more programs/s with 2 "
        "workers on 2 cores). A program's threads then share that CPU.",
    )
    max_in_flight: int = Field(
        default=32, ge=1,
        description="Programs in flight per worker: a Ray executor actor holds at most this "
        "many, and imap takes at most this many per worker ahead of their results "
        "(backpressure); the rest wait in the pool's queue.",
    )
    ray_batch: int = Field(
        default=16, ge=1,
        description="Most programs one call to a Ray executor actor carries: Ray's per-call "
        "work (scheduling, serialising the problem) is paid once per call. An actor has at "
        "most two calls, so that one waits in it while the other's results travel back.",
    )
    float_tolerance: float = Field(
        default=1e-6, ge=0,
        description="Relative and absolute tolerance when comparing numbers in outputs.",
    )
    autoscale: bool = Field(
        default=False,
        description="During training, grow the pool when programs wait for an executor and "
        "shrink it when executors sit idle, between min_workers and max_workers.",
    )
    min_workers: int = Field(default=1, ge=1, description="Smallest pool when autoscaling.")
    max_workers: int = Field(default=8, ge=1, description="Largest pool when autoscaling.")
    target_queue_per_worker: float = Field(
        default=2.0, gt=0,
        description="Autoscaling grows the pool when more programs than this per executor "
        "wait for one.",
    )
    autoscale_cooldown_s: float = Field(
        default=20.0, ge=0, description="Seconds between two autoscaling changes.")


class ModelConfig(Section):
    """The policy: any Hugging Face causal LM or encoder-decoder, by folder or hub id, or the
    embedded tiny model built and warm-started here."""

    path: str = Field(
        default="tiny",
        description="A folder with a save_pretrained model and tokenizer (e.g. a CodeT5 or a "
        "coder LM checkpoint, or one from `rltf build-tiny`); a hub id such as "
        "Salesforce/codet5-large-ntp-py, found in the local Hugging Face cache (HF_HUB_CACHE "
        "or HF_HOME) and downloaded only where HF_HUB_OFFLINE is unset and the hub is "
        "reachable (else the run stops at load, saying how to pre-download it); or `tiny`: "
        "the embedded model, built and warm-started on the built-in suite and cached. The "
        "tokenizer comes from the same place (learner/models.py).",
    )
    cache_dir: str = Field(
        default=".cache/rltf",
        description="Where the tiny model, its tokenizer and warm start are cached.",
    )
    warm_start_steps: int = Field(
        default=600, ge=0,
        description="Supervised steps of the tiny model's warm start (path=tiny only), on "
        "the training problems that carry reference solutions.",
    )
    warm_start_seed: int | None = Field(
        default=None, description="Seed of the tiny model's initialisation and warm start "
        "(default: the run's `seed`). benchmarks/ablation.py fixes it, so that its seeds vary "
        "the training run alone, over one cached warm start.",
    )
    warm_start_eval_every: int = Field(
        default=0, ge=0,
        description="Steps between points of the warm start's validation curve (loss on the "
        "validation references and greedy pass@1 on the validation split; 0: none).",
    )


class DataConfig(Section):
    """Training and held-out problems."""

    source: Literal["synth", "jsonl"] = Field(
        default="synth",
        description="synth: the built-in seeded suite; jsonl: problems files (train_file, "
        "heldout_file) in the format of docs/ARCHITECTURE.md, e.g. from `rltf data apps`, "
        "or datasets folders from `rltf gen-tests --hf-out`.",
    )
    synth_n: int = Field(
        default=1200, ge=10,
        description="Tasks in the built-in suite, over its train (68%), validation (12%) "
        "and test (20%) splits (problems/synth.py).")
    synth_seed: int = Field(
        default=0, description="Seed of the built-in suite and its split; fixed while the "
        "run's `seed` varies, so that every seed is evaluated on the same problems.")
    train_file: str | None = Field(
        default=None, description="Training problems: a JSONL file or a datasets folder.")
    val_file: str | None = Field(
        default=None, description="Validation problems (a JSONL file or a datasets folder), "
        "for every choice of settings and the evaluations during training; without it those "
        "use heldout_file.")
    heldout_file: str | None = Field(
        default=None, description="Test problems (a JSONL file or a datasets folder): "
        "evaluated before and after training, only reported.")
    max_heldout: int | None = Field(
        default=None, ge=1,
        description="Evaluate on at most this many validation and this many test problems.")


class SamplerConfig(Section):
    """Sampler actors that generate programs."""

    actors: int = Field(default=1, ge=1, description="Sampler actors.")
    gpus_per_actor: float = Field(default=0.0, ge=0, description="GPUs each sampler reserves.")
    cpus_per_actor: float = Field(default=1.0, gt=0, description="CPUs each sampler reserves.")
    memory_gb: float = Field(default=0.0, ge=0, description="Memory (GiB) Ray reserves for "
                             "each sampler; 0 reserves none.")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Extra Ray custom resources each sampler asks for, "
        "e.g. {gpu_node: 1}, so that samplers land on the node types that offer them.")
    samples_per_prompt: int = Field(
        default=4, ge=1, description="Samples drawn for each problem (the paper: 20).")
    include_greedy: bool = Field(
        default=True, description="Also decode one greedy sample per problem: the baseline "
        "of the paper's relative returns (reward.baseline=greedy needs it), and one of the "
        "others' leave-one-out mean. It is never trained on: it was not drawn from the "
        "sampling policy (its behaviour log-probs are not those of a sampled token), so it "
        "serves as the baseline only.")
    temperature: float = Field(default=0.8, gt=0, description="Sampling temperature.")
    top_p: float = Field(default=0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(default=160, ge=1, description="Longest generation.")
    prompts_per_batch: int = Field(
        default=8, ge=1, description="Problems a sampler generates for in one call.")
    max_prompt_tokens: int | None = Field(
        default=None, ge=1,
        description="Longest prompt in tokens, special tokens included. A longer prompt "
        "keeps its first ceil(n/2) and last floor(n/2) tokens and loses the middle: the start "
        "of a statement says what to do, its end holds the examples, the format instruction "
        "and the starter code the model continues. The same cut applies in the sampler, the "
        "warm start and the supervised term. null: decoder-only models take their context "
        "minus max_new_tokens; encoder-decoders their tokenizer's model_max_length (512 for "
        "CodeT5), else 512.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="The dtype samplers generate in. auto: the learner's (bf16 when the "
        "learner trains in bf16, i.e. on GPUs with learner.precision auto or bf16; fp32 on "
        "CPU), so that the log-probs a sampler records are the ones the learner computes and "
        "the importance ratio of a fresh sample is 1. float32 on GPU doubles memory and "
        "time per token and makes those ratios differ from 1 by bf16's rounding.")


class RewardConfig(Section):
    """Rewards from unit-test feedback (the paper's constants are the defaults)."""

    pass_reward: float = Field(default=1.0, description="Reward of a program passing all tests.")
    fail_reward: float = Field(default=-0.3, description="Reward of a wrong answer.")
    runtime_error_reward: float = Field(
        default=-0.6, description="Reward of a runtime error, timeout, memory or output limit.")
    syntax_error_reward: float = Field(default=-1.0, description="Reward of a syntax error.")
    adaptive: bool = Field(
        default=True, description="Adaptive feedback: a failed program earns -0.3 + 1.3 x "
        "passed/total instead of -0.3.")
    fine_grained: bool = Field(
        default=True, description="Fine-grained feedback: penalise the tokens of the error "
        "line (or the whole program for truncation, timeouts and recursion). A generation "
        "that ended on EOS keeps its EOS token as the last RL token (so the RL term, not "
        "only the supervised one, teaches when to stop): it has no characters, so an error "
        "line never covers it; it gets the sequence's return, and the penalty when the whole "
        "program is blamed (e.g. it stopped in the middle of a construct).")
    fine_grained_penalty: float = Field(
        default=0.3, ge=0, description="Penalty on the tokens fine-grained feedback blames.")
    baseline: Literal["greedy", "leave_one_out", "none"] = Field(
        default="greedy", description="Baseline subtracted from rewards: the greedy sample's "
        "reward (the paper; needs sampler.include_greedy), the mean of the other samples of "
        "the problem, or none (required with algo=actor_critic and learner.critic=value: the "
        "value head is the baseline).")


class LearnerConfig(Section):
    """The DeepSpeed learner group and its objective."""

    ranks: int = Field(default=1, ge=1, description="Learner ranks (one GPU each on a cluster).")
    gpus_per_rank: float = Field(default=0.0, ge=0, description="GPUs each rank reserves.")
    cpus_per_rank: float = Field(default=1.0, gt=0, description="CPUs each rank reserves.")
    memory_gb: float = Field(default=0.0, ge=0, description="Memory (GiB) Ray reserves for "
                             "each rank; 0 reserves none.")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Extra Ray custom resources each rank's "
        "placement-group bundle asks for, e.g. {gpu_node: 1}.")
    lr: float = Field(default=2e-5, gt=0, description="Peak learning rate (the paper: 2e-6).")
    warmup_steps: int = Field(default=5, ge=0, description="Linear warm-up steps.")
    schedule: Literal["constant", "linear", "cosine"] = Field(
        default="constant", description="Learning-rate schedule after warm-up.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(default=1.0, gt=0, description="Gradient-norm clipping.")
    batch_size: int = Field(
        default=16, ge=1, description="Experiences per learner step, over all ranks.")
    micro_batch_size: int = Field(
        default=4, ge=1, description="Experiences per forward pass on one rank.")
    zero_stage: int = Field(default=2, ge=0, le=3, description="DeepSpeed ZeRO stage.")
    offload_optimizer: bool = Field(default=False, description="ZeRO optimizer CPU offload.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="auto: bf16 on GPU, fp32 on CPU.")
    deepspeed_config: str | None = Field(
        default=None, description="A DeepSpeed JSON/YAML file used as is ('auto' values "
        "filled from these settings); overrides zero_stage, offload and precision.")
    sl_weight: float = Field(
        default=0.1, ge=0, description="Weight of the supervised term on reference solutions.")
    sl_mode: Literal["mix", "alternate"] = Field(
        default="mix", description="mix: every micro-batch's loss is rl + sl_weight x sl (the "
        "RL samples and as many reference solutions). alternate (the paper's official code): "
        "micro-batches of reference solutions and of RL samples take turns within each "
        "optimizer step, supervised first; a rank runs twice as many micro-batches (its RL "
        "share of learner.batch_size plus as many reference solutions), each with its own "
        "loss, sl_weight x sl or rl, and the step averages them. Needs sl_weight > 0 and "
        "training problems with reference solutions.")
    importance_ratio_max: float | None = Field(
        default=None, gt=0, description="Only with clip_eps=null: truncation of the "
        "per-token importance weight min(pi / mu, importance_ratio_max) for samples from older "
        "weights (null: no correction). With clip_eps set, the clipped surrogate does the "
        "correction and this setting is refused, as it would have no effect.")
    clip_eps: float | None = Field(
        default=0.2, gt=0, lt=1, description="PPO-style clipping of the policy-gradient "
        "surrogate: a token's gradient stops once its probability ratio to the sampling "
        "policy leaves [1 - clip_eps, 1 + clip_eps] in the rewarded direction. null: plain "
        "policy gradient with the truncated importance weight (importance_ratio_max).")
    kl_coef: float = Field(
        default=0.0, ge=0, description="Weight of a per-token KL penalty to the frozen "
        "starting policy (the reference model), on the RL samples' tokens (0: off, and no "
        "reference model is loaded). The reference is a second copy of the starting weights "
        "on each rank under ZeRO 0-2 (where every rank holds the full policy anyway) and is "
        "partitioned over the ranks like the policy under ZeRO-3.")
    kl_estimator: Literal["k3", "k2"] = Field(
        default="k3", description="The per-token KL estimate, with d = log pi_ref - log pi of "
        "a sampled token: k3 = exp(d) - d - 1 (unbiased, never negative; its gradient "
        "(1 - pi_ref / pi) grad log pi pulls each token's probability toward the "
        "reference's, as in GRPO) or k2 = d^2 / 2 (gradient (log pi - log pi_ref) grad log "
        "pi, that of the per-token KL itself). learner/loss.py works both out.")
    checkpoint_every: int = Field(
        default=50, ge=1, description="Learner steps between checkpoints (C).")
    critic: Literal["value", "outcome"] = Field(
        default="value", description="With algo=actor_critic: value (a value head on the "
        "policy's hidden states; advantages = return - value) or outcome (CodeRL: a "
        "classifier of the four outcomes whose probability of the observed one weights the "
        "token rewards).")
    critic_lr: float = Field(default=1e-4, gt=0, description="The critic's learning rate.")
    critic_hidden: int = Field(default=512, ge=1, description="Width of the critic's MLP.")


class BufferConfig(Section):
    """The online replay buffer."""

    capacity: int = Field(default=6400, ge=1, description="Experiences kept (the newest).")
    max_staleness: int = Field(
        default=4, ge=0, description="Experiences older than this many policy versions are "
        "dropped, never trained on. A version is one publish of the weights (every "
        "weights.sync_every learner steps), so samples live for up to max_staleness x "
        "sync_every learner steps after the publish of the weights that made them.")
    mode: Literal["uniform", "fifo"] = Field(
        default="fifo", description="uniform: draw with replacement; fifo: each experience "
        "once, oldest first.")
    min_fill: int = Field(
        default=16, ge=1, description="Experiences the buffer must hold before a learner "
        "step is drawn from it; at least learner.batch_size.")


class WeightsConfig(Section):
    """How new weights reach the samplers."""

    transport: Literal["object_store", "collective"] = Field(
        default="object_store", description="object_store: one ray.put every sampler "
        "fetches; collective: a torch.distributed broadcast from learner rank 0 (nccl on "
        "GPU, gloo on CPU).")
    sync_every: int = Field(
        default=1, ge=1, description="Learner steps between publishes of the weights (K); "
        "each publish is the next policy version (1, 2, 3, ...), which samples carry and "
        "buffer.max_staleness counts.")
    bucket_mb: float = Field(default=64.0, gt=0, description="Collective broadcast bucket size.")


class TrainConfig(Section):
    """The online training loop."""

    max_steps: int = Field(default=40, ge=1, description="Learner steps to run.")
    max_minutes: float | None = Field(
        default=None, gt=0, description="Stop (with a checkpoint) after this many minutes.")
    eval_every: int = Field(
        default=20, ge=1, description="Learner steps between validation evaluations (E).")
    eval_samples: int = Field(
        default=0, ge=0, description="Samples per evaluated problem at eval_temperature; "
        "pass@1 is the unbiased estimate c / n over them. 0: the greedy program alone.")
    eval_temperature: float = Field(default=0.6, gt=0, description="Sampling temperature "
                                    "of evaluation samples (the paper samples at 0.6).")
    eval_greedy: bool = Field(
        default=True, description="Also decode one greedy program per evaluated problem "
        "and report its pass rate.")
    eval_batch_size: int = Field(
        default=128, ge=1, description="Sequences per model.generate call in evaluations "
        "(the warm start's too); larger batches cost less CPU per program for small models "
        "(the tiny model: 66 ms at 528 against 104 ms at 128) and more memory.")
    eval_val: bool = Field(
        default=True, description="Evaluate the validation split at step 0, every "
        "eval_every steps and at the end (what settings are chosen on); false: only the "
        "test split, before and after training.")
    max_queue: int = Field(
        default=64, ge=1, description="Samples made and not yet trained on (being generated, "
        "in the executor pool, in the replay buffer) at which samplers pause (backpressure): "
        "it also bounds how many policy versions old the trained samples get. At least "
        "buffer.min_fill.")
    restarts: int = Field(
        default=2, ge=0, description="Restarts from the last checkpoint after a learner rank "
        "dies, in the whole run; an actor killed during a restart uses the next one.")


class ClusterConfig(Section):
    """Where the job runs."""

    address: str | None = Field(
        default=None, description="Ray address to join (e.g. auto inside `ray job submit`); "
        "null starts a local instance.")
    namespace: str = Field(
        default="rltf", min_length=1,
        description="Ray namespace of the job's named actors (rltf-driver, rltf-buffer, ...); "
        "give concurrent jobs on one cluster different namespaces, and pass the same one to "
        "`rltf scale --namespace`.")
    num_cpus: int | None = Field(
        default=None, ge=1, description="CPUs of a local Ray instance (null: all).")
    num_gpus: int | None = Field(
        default=None, ge=0, description="GPUs the cluster has, checked at load (null: not "
        "checked).")
    placement_timeout_s: float = Field(
        default=600.0, gt=0, description="How long start-up waits for resources that the "
        "cluster has but are busy, or that its autoscaler is adding (it logs what it waits "
        "for every 30 s); demands no node and no autoscaler node type can meet stop the run "
        "at once.")


class RLTFConfig(Section):
    """The whole configuration of a run."""

    preset: str = Field(default="custom", description="Name of the preset, used in run folders.")
    seed: int = Field(default=0, description="Seed for every random choice of the run.")
    algo: Literal["rltf", "actor_critic"] = Field(
        default="rltf", description="rltf: policy gradient with the reward baseline; "
        "actor_critic: a jointly trained critic gives per-token advantages.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The policy model.")
    data: DataConfig = Field(default_factory=DataConfig, description="Problems.")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig,
                                     description="Unit-test executor.")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig, description="Samplers.")
    reward: RewardConfig = Field(default_factory=RewardConfig, description="Rewards.")
    learner: LearnerConfig = Field(default_factory=LearnerConfig, description="Learner.")
    buffer: BufferConfig = Field(default_factory=BufferConfig, description="Replay buffer.")
    weights: WeightsConfig = Field(default_factory=WeightsConfig,
                                   description="Weight broadcast.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training loop.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Ray cluster.")

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> "RLTFConfig":
        broken = (info.context or {}).get("broken", frozenset())
        found = conflicts(self, broken)
        if found:
            raise Conflicts(found)
        return self
