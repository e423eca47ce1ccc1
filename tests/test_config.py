import pytest

from core.config_reading import ConfigError, build_config, dump_config, load_config, parse_override


def test_defaults_are_valid():
    cfg = build_config()
    assert cfg.executor.workers >= 1


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("executor:\n  workers: 3\n  time_limit_s: 2\n")
    cfg = load_config(f, ["executor.workers=5", "executor.resources={cpu_node: 1}"])
    assert cfg.preset == "c"
    assert cfg.executor.workers == 5
    assert cfg.executor.time_limit_s == 2.0
    assert cfg.executor.resources == {"cpu_node": 1}


def test_override_values_are_yaml():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a=x=y") == (["a"], "x=y")
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("novalue")


def test_errors_name_the_field_and_the_fix():
    with pytest.raises(ConfigError) as err:
        build_config({}, ["executor.workers=0"])
    assert "executor.workers" in str(err.value) and "got 0" in str(err.value)
    with pytest.raises(ConfigError) as err:
        build_config({}, ["executor.wrkers=2"])
    assert "executor.wrkers" in str(err.value) and "spelling" in str(err.value)
    with pytest.raises(ConfigError, match="program_budget_s"):
        build_config({}, ["executor.program_budget_s=1", "executor.time_limit_s=5"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("executor: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_dump_round_trips(tmp_path):
    cfg = build_config({}, ["executor.workers=7"])
    f = tmp_path / "r.yaml"
    f.write_text(dump_config(cfg))
    assert load_config(f).executor == cfg.executor


def test_every_field_is_described():
    from core.config import RLTFConfig

    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(RLTFConfig)


def test_impossible_settings_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="learner.batch_size"):
        build_config({}, ["learner.ranks=2", "learner.batch_size=6", "learner.micro_batch_size=4"])
    with pytest.raises(ConfigError, match="cluster.num_gpus"):
        build_config({}, ["cluster.num_gpus=1", "learner.ranks=2", "learner.gpus_per_rank=1",
                          "learner.batch_size=16"])
    with pytest.raises(ConfigError, match="does not exist"):
        build_config({}, [f"model.path={tmp_path}/no-such-model"])
    with pytest.raises(ConfigError, match="train_file"):
        build_config({}, ["data.source=jsonl"])
    # A hub name is not checked against the disk (it is fetched where there is a network).
    assert build_config({}, ["model.path=Salesforce/codet5-large"]).model.path


def test_autoscale_bounds_must_hold_the_starting_size():
    with pytest.raises(ConfigError, match="min_workers"):
        load_config(None, ["executor.autoscale=true", "executor.workers=4",
                           "executor.max_workers=2"])
    cfg = load_config(None, ["executor.autoscale=true", "executor.workers=2",
                             "executor.min_workers=1", "executor.max_workers=4"])
    assert cfg.executor.max_workers == 4


@pytest.mark.parametrize("preset", ["tiny", "apps_codet5_large", "mbpp_decoder"])
def test_presets_load(preset, tmp_path):
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "configs" / f"{preset}.yaml"
    data = tmp_path / "p.jsonl"
    data.write_text("")
    over = [] if preset == "tiny" else [f"data.train_file={data}", f"data.heldout_file={data}"]
    cfg = load_config(path, over)
    assert cfg.preset == preset
    if preset == "tiny":
        assert cfg.model.path == "tiny" and cfg.cluster.address is None
    else:
        # impossible settings are caught at load, with the fix named
        with pytest.raises(ConfigError, match="num_gpus"):
            load_config(path, over + ["cluster.num_gpus=2"])
        with pytest.raises(ConfigError, match="train_file"):
            load_config(path, ["data.train_file=missing.jsonl"])


def test_settings_that_would_be_rewritten_or_have_no_effect_are_refused():
    # a value critic is the baseline: the rewards must come without one
    with pytest.raises(ConfigError, match="reward.baseline=none"):
        build_config({}, ["algo=actor_critic", "learner.critic=value"])
    assert build_config({}, ["algo=actor_critic", "learner.critic=value",
                             "reward.baseline=none"]).reward.baseline == "none"
    assert build_config({}, ["algo=actor_critic", "learner.critic=outcome"])
    # the greedy baseline needs the greedy sample
    with pytest.raises(ConfigError, match="sampler.include_greedy=true"):
        build_config({}, ["sampler.include_greedy=false"])
    assert build_config({}, ["sampler.include_greedy=false", "reward.baseline=leave_one_out"])
    # the truncated importance weight is unused under the clipped surrogate
    with pytest.raises(ConfigError, match="learner.importance_ratio_max=null"):
        build_config({}, ["learner.importance_ratio_max=2.0"])
    assert build_config({}, ["learner.importance_ratio_max=2.0", "learner.clip_eps=null"])
    # nothing to alternate with
    with pytest.raises(ConfigError, match="learner.sl_mode=mix"):
        build_config({}, ["learner.sl_mode=alternate", "learner.sl_weight=0"])
    # the first learner step waits for a whole batch, whatever min_fill says
    with pytest.raises(ConfigError, match="buffer.min_fill=32"):
        build_config({}, ["learner.batch_size=32", "learner.micro_batch_size=4"])
    assert build_config({}, ["learner.batch_size=32", "buffer.min_fill=32"]).buffer.min_fill == 32
    # samplers pause at max_queue samples not trained on, the buffer's included
    with pytest.raises(ConfigError, match="train.max_queue=128 or more"):
        build_config({}, ["buffer.min_fill=64", "train.max_queue=63"])
    # problems files are read only with data.source=jsonl; the built-in suite would be used
    with pytest.raises(ConfigError, match="data.source=jsonl"):
        build_config({}, ["data.train_file=train.jsonl"])
    with pytest.raises(ConfigError, match="data.source=jsonl"):
        build_config({}, ["data.heldout_file=heldout.jsonl"])


def test_every_preset_file_loads():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "configs"
    for f in sorted(root.glob("*.yaml")):
        overrides = []
        if "apps" in f.stem or "mbpp" in f.stem:  # their data files are made by `rltf data`
            overrides = [f"data.train_file={f}", f"data.heldout_file={f}"]
        load_config(f, overrides)


def test_every_problem_is_listed_at_once_with_its_path_and_fix():
    # two wrong types, an out-of-range value, two unknown keys (one a whole section) and two
    # conflicts among valid sections; a conflict that reads an invalid section is skipped
    with pytest.raises(ConfigError) as err:
        build_config({"learnr": {"lr": 1}}, [
            "executor.workers=0", "executor.wrkers=2", "learner.lr=fast",
            "sampler.include_greedy=maybe", "train.max_steps=many",
            "learner.sl_mode=alternate",  # conflict in learner: skipped, learner.lr is invalid
            "buffer.capacity=8", "buffer.min_fill=8", "learner.batch_size=16",  # skipped too
            "weights.transport=collective", "train.eval_samples=0",
            "train.eval_greedy=false"])
    text = str(err.value)
    lines = text.splitlines()[1:]
    assert text.startswith(f"invalid config ({len(lines)} problems):")
    by_path = {line.split(":")[0].strip(): line for line in lines}
    assert set(by_path) == {"executor.workers", "executor.wrkers", "learner.lr",
                            "sampler.include_greedy", "train.max_steps", "learnr"}
    assert "got 0; set it to a value greater than or equal to 1" in by_path["executor.workers"]
    assert "did you mean workers?" in by_path["executor.wrkers"]
    assert "did you mean learner?" in by_path["learnr"]
    assert "got 'fast'" in by_path["learner.lr"] and "number" in by_path["learner.lr"]
    # train is invalid, so its conflict (nothing evaluated) is not claimed either; with the
    # types fixed, the conflicts among valid settings all come in one error too
    with pytest.raises(ConfigError) as err:
        build_config({}, ["executor.workers=0", "learner.sl_mode=alternate",
                          "learner.sl_weight=0", "buffer.min_fill=8", "train.eval_samples=0",
                          "train.eval_greedy=false", "sampler.include_greedy=false"])
    paths = [line.split(":")[0].strip() for line in str(err.value).splitlines()[1:]]
    assert sorted(paths) == ["buffer.min_fill", "executor.workers", "learner.sl_mode",
                             "reward.baseline", "train.eval_samples"]
    assert "set learner.sl_mode=mix" in str(err.value)
    assert "set sampler.include_greedy=true or reward.baseline=leave_one_out" in str(err.value)


def test_the_ablation_variants_load_on_the_default_preset():
    from pathlib import Path

    from benchmarks.ablation import VARIANTS

    preset = Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml"
    for name, overrides in VARIANTS.items():
        assert load_config(preset, overrides).preset == "tiny", name


# Classes below core/ that still repeat settings of a config section, with the reason; the
# test fails when one no longer does, so the list only shrinks.
COPIES_ALLOWED = {
    ("actors/sampler.py", "SamplerSettings", "sampler"):
        "a per-call request: training fills it from sampler.*, evaluation from train.eval_*",
    ("learner/sft.py", "SFTSettings", "learner"):
        "the flags of `rltf sft` (the warm start's supervised run), not the RL learner's",
}


def test_no_component_declares_a_config_section_again():
    # A class whose annotated fields repeat three or more settings of one section is a copy
    # that can drift (as lr 1e-5 against 2e-5 did): take the section itself instead.
    import ast
    from pathlib import Path

    from core.config import RLTFConfig

    root = Path(__file__).resolve().parent.parent
    sections = {name: set(f.annotation.model_fields) for name, f in RLTFConfig.model_fields.items()
                if hasattr(f.annotation, "model_fields")}
    found = {}
    for pkg in ("actors", "learner", "executor", "reward", "problems", "evaluation", "cluster"):
        for path in sorted((root / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ClassDef):
                    continue
                fields = {s.target.id for s in node.body
                          if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
                for section, names in sections.items():
                    if len(fields & names) >= 3:
                        key = (path.relative_to(root).as_posix(), node.name, section)
                        found[key] = sorted(fields & names)
    copies = {k: v for k, v in found.items() if k not in COPIES_ALLOWED}
    assert not copies, f"classes that repeat a config section's settings: {copies}"
    stale = set(COPIES_ALLOWED) - set(found)
    assert not stale, f"no longer copies, remove them from COPIES_ALLOWED: {sorted(stale)}"
