"""Both paper presets at tiny scale, run exactly as the README shows them (the block between
its `tiny-presets` markers): `configs/apps_codet5_large.yaml` on a tiny CodeT5-shaped model on
the APPS fixtures (weights published every 10 steps), and `configs/mbpp_decoder.yaml` with two
ZeRO-3 learner ranks on a tiny Qwen2-style model on MBPP, each for 20 learner steps to
`summary.json`. Only the model, the data files and the sizes are overridden.

The commands run in a temporary folder holding links to the repository's `configs/` and
`tests/`, so their `data/` and `runs/` land there.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- tiny-presets:begin -->")[1].split("<!-- tiny-presets:end -->")[0]
    lines = [ln for ln in block.splitlines() if not ln.startswith("```")]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [shlex.split(ln) for ln in joined.splitlines() if ln.strip()]


def _run_preset(tmp_path: Path, config: str) -> Path:
    """Run the README's commands up to and including the `rltf train` of `config`; return
    its run folder."""
    for link in ("configs", "tests"):
        if not (tmp_path / link).exists():
            (tmp_path / link).symlink_to(ROOT / link)
    commands = readme_commands()
    train = next(i for i, c in enumerate(commands)
                 if c[:2] == ["rltf", "train"] and config in c)
    start = max([i + 1 for i, c in enumerate(commands[:train]) if c[:2] == ["rltf", "train"]],
                default=0)
    for cmd in commands[start:train + 1]:
        assert cmd[0] == "rltf", cmd
        proc = subprocess.run([sys.executable, "-m", "cluster.cli", *cmd[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-4000:])
    cmd = commands[train]
    return tmp_path / cmd[cmd.index("--run-dir") + 1]


def _check_run(run: Path) -> list[dict]:
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["stopped_by"] == "max_steps"
    for key in ("pass_at_1_before", "pass_at_1_after"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["programs_judged"] > 0 and summary["restarts"] == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    trained = [r for r in rows if "loss/total" in r]
    assert [r["step"] for r in trained] == list(range(1, 21))
    return trained


def test_apps_preset_on_a_tiny_codet5(tmp_path):
    import yaml

    run = _run_preset(tmp_path, "configs/apps_codet5_large.yaml")
    trained = _check_run(run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["preset"] == "apps_codet5_large" and cfg["weights"]["sync_every"] == 10
    assert cfg["learner"]["zero_stage"] == 2 and cfg["learner"]["offload_optimizer"]
    assert [r["step"] for r in trained if "sync/seconds" in r] == [10, 20]
    assert json.loads((run.parent / "tiny-codet5" / "config.json").read_text()
                      )["architectures"] == ["T5ForConditionalGeneration"]


def test_mbpp_preset_on_a_tiny_qwen2_with_two_zero3_ranks(tmp_path):
    import yaml

    run = _run_preset(tmp_path, "configs/mbpp_decoder.yaml")
    _check_run(run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["preset"] == "mbpp_decoder" and cfg["weights"]["transport"] == "collective"
    assert cfg["learner"]["ranks"] == 2 and cfg["learner"]["zero_stage"] == 3
    shards = list((run / "checkpoints" / "step-000020" / "deepspeed").rglob("*rank_1*optim*"))
    assert shards, "no ZeRO-3 optimizer shard of rank 1 in the last checkpoint"
    assert json.loads((run.parent / "tiny-qwen2" / "config.json").read_text()
                      )["architectures"] == ["Qwen2ForCausalLM"]
