import json

from cluster.run_log import RunLog, read_metrics, write_report


def test_metrics_tensorboard_and_report(tmp_path):
    log = RunLog(tmp_path, console=False)
    for step in range(1, 6):
        log.step(step, {"reward/mean": step / 10, "loss/rl": 1.0 / step, "outcome/pass": 0.2,
                        "eval/pass@1": 0.1 * step, "buffer/mean_age": 0.5, "note": "x",
                        "throughput/samples_per_s": float("nan")})
    log.close()
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["throughput/samples_per_s"] is None  # not a number -> null, not NaN
    assert any((tmp_path / "tensorboard").iterdir())
    report = write_report(tmp_path, {"pass_at_1_before": 0.1, "pass_at_1_after": 0.5, "steps": 5})
    text = report.read_text()
    assert "pass_at_1_after" in text and "plots/reward.png" in text
    for name in ("reward.png", "losses.png", "pass_at_1.png", "outcomes.png", "staleness.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000
    json.dumps(rows)
