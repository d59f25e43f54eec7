"""``videorep report RUN_DIR`` and ``train cosettle --eval-every`` (the trainer's on_checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videorep.cli import main


def _fake_run(run: Path) -> None:
    run.mkdir(parents=True)
    with open(run / "log.jsonl", "w") as fh:
        for step in range(1, 6):
            rec = {"step": step, "lr": 1e-4 * step, "loss": 5.0 - step, "cycle_acc": 0.1 * step}
            fh.write(json.dumps(rec) + "\n")
    with open(run / "checkpoint_evals.jsonl", "w") as fh:
        fh.write(json.dumps({"step": 0, "frozen": True, "J&F": 0.5, "J": 0.4, "F": 0.6}) + "\n")
        fh.write(json.dumps({"step": 5, "frozen": False, "J&F": 0.55, "J": 0.5, "F": 0.6}) + "\n")
    (run / "evals" / "step-000005").mkdir(parents=True)
    results = {"J_mean": 0.5, "F_mean": 0.6, "JF_mean": 0.55}
    (run / "evals" / "step-000005" / "results.json").write_text(json.dumps(results))
    (run / "config.json").write_text(json.dumps({"method": "cosettle"}))


@pytest.mark.slow  # matplotlib import + two figures: ~3 s alone, ~40 s on the shared machine
def test_report_gathers_curves_evaluations_and_settings(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fake_run(run)
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # training curves + J&F over steps
    assert "Checkpoint evaluations" in page and "<td>55.0</td>" in page
    assert "step-000005" in page and "cosettle" in page
    assert "http" not in page.replace("https://", "")  # self-contained: nothing fetched


def test_report_of_an_empty_folder_is_one_clear_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "nothing to report" in capsys.readouterr().err


@pytest.mark.slow
def test_train_with_eval_every_writes_j_and_f_per_checkpoint(tmp_path: Path) -> None:
    from videorep.data.synthetic import write_davis_set

    davis = tmp_path / "davis"
    write_davis_set(davis, sequences=1, frames=3, height=32, width=48)
    frames = tmp_path / "clip"
    frames.mkdir()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(40, 40, 3), dtype=np.uint8)
    for t in range(8):
        Image.fromarray(np.roll(base, t, axis=1)).save(frames / f"{t:03d}.png")
    out = tmp_path / "run"
    argv = ["train", "cosettle", "--backbone", "random_vit_tiny16", "--data", str(frames)]
    argv += ["--out", str(out), "--size", "32", "--batch-size", "2", "--max-steps", "2"]
    argv += ["--samples-per-video", "2", "--no-progress", "--eval-every", "1"]
    argv += ["--eval-root", str(davis), "--eval-size", "32x48"]
    assert main(argv) == 0
    records = [json.loads(x) for x in (out / "checkpoint_evals.jsonl").read_text().splitlines()]
    assert [(r["step"], r["frozen"]) for r in records] == [(0, True), (1, False), (2, False)]
    assert all(0 <= r["J&F"] <= 1 for r in records)
    assert (out / "evals" / "step-000002" / "results.json").is_file()
    assert main(["report", str(out)]) == 0
    assert "Checkpoint evaluations" in (out / "report.html").read_text()
