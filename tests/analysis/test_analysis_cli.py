"""``videorep analyze tradeoff|spectrum|shortcut`` end to end on tiny generated frame folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from videorep.analysis.shortcut import ControlPairs, shuffle_patches
from videorep.cli import main

BACKBONE = "random_vit_tiny16"


def _videos(root: Path, count: int = 3, frames: int = 5) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for v in range(count):
        folder = root / f"video{v}"
        folder.mkdir(parents=True)
        base = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
        for t in range(frames):
            img = np.roll(base, shift=2 * t, axis=1)
            Image.fromarray(img).save(folder / f"{t:05d}.png")
        paths.append(str(folder))
    return paths


def _head(out: Path, dim: int = 192) -> Path:
    from videorep.methods.cosettle.heads import ProjectionHead, save_projection

    torch.manual_seed(0)
    head = ProjectionHead(dim, "linear", "identity")
    return save_projection(head, out, extra={"backbone": BACKBONE})


@pytest.mark.slow  # ~6 s alone, up to a minute on the shared 2-core machine
def test_tradeoff_command_writes_table_json_and_plot(tmp_path: Path, capsys) -> None:
    videos = _videos(tmp_path / "v")
    head = _head(tmp_path / "run" / "projection")
    out = tmp_path / "out"
    argv = ["analyze", "tradeoff", "--backbone", BACKBONE, "--videos", *videos, "--frames", "4"]
    argv += ["--projection", str(head), "--out", str(out), "--device", "cpu", "--no-progress"]
    argv += ["--resize", "40", "--crop", "32", "--cache", str(tmp_path / "cache")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert len(list((tmp_path / "cache").glob("tokens-*.pt"))) == 1
    assert "frozen encoder" in printed and "run" in printed
    summary = json.loads((out / "tradeoff.json").read_text())
    assert set(summary["rows"]) == {"frozen encoder", "run"}
    frozen = summary["rows"]["frozen encoder"]
    assert frozen["videos"] == 3 and len(frozen["per_video"]) == 3
    assert frozen["per_video"][0]["name"] == "video0"
    # gamma of the frozen encoder: its own margin is D_inter - gamma D_intra
    ratio = frozen["d_intra_ori"] / frozen["d_inter_ori"]
    assert summary["gamma"] == pytest.approx(ratio)
    assert frozen["margin"] == pytest.approx(frozen["d_inter"] - ratio * frozen["d_intra"])
    assert 0 <= frozen["cycle_acc"] <= 1
    assert (out / "tradeoff.png").stat().st_size > 1000
    # a second run reads the cached tokens and gives the same numbers
    assert main(argv[:-1] + [str(tmp_path / "cache")]) == 0
    again = json.loads((out / "tradeoff.json").read_text())
    assert again["rows"] == summary["rows"]


def test_tradeoff_command_refuses_a_head_of_another_width(tmp_path: Path, capsys) -> None:
    videos = _videos(tmp_path / "v", count=2, frames=2)
    head = _head(tmp_path / "h" / "projection", dim=384)
    argv = ["analyze", "tradeoff", "--backbone", BACKBONE, "--videos", *videos]
    argv += ["--projection", str(head), "--out", str(tmp_path / "o"), "--no-progress"]
    argv += ["--resize", "40", "--crop", "32"]
    assert main(argv) == 2
    assert "width" in capsys.readouterr().err


@pytest.mark.slow
def test_spectrum_command(tmp_path: Path, capsys) -> None:
    videos = _videos(tmp_path / "v")
    head = _head(tmp_path / "run" / "projection")
    out = tmp_path / "spec"
    argv = ["analyze", "spectrum", "--backbone", BACKBONE, "--videos", *videos, "--frames", "3"]
    argv += ["--projection", str(head), "--out", str(out), "--samples", "16", "--no-progress"]
    argv += ["--resize", "40", "--crop", "32"]
    assert main(argv) == 0
    result = json.loads((out / "spectrum.json").read_text())
    assert result["dim"] == 192 and len(result["mu"]) == 192
    assert result["videos"] == 3
    assert result["sigma"] == sorted(result["sigma"], reverse=True)
    assert -1 <= result["spearman"] <= 1
    assert (out / "spectrum.png").is_file()


def test_shuffle_patches_permutes_whole_cells() -> None:
    image = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)
    out = shuffle_patches(image, 2, torch.Generator().manual_seed(0))
    cells = {
        tuple(image[:, i : i + 2, j : j + 2].flatten().tolist()) for i in (0, 2) for j in (0, 2, 4)
    }
    got = {
        tuple(out[:, i : i + 2, j : j + 2].flatten().tolist()) for i in (0, 2) for j in (0, 2, 4)
    }
    assert cells == got and not torch.equal(out, image)


def test_control_pairs_replace_frame_two() -> None:
    class Bank:
        def __init__(self) -> None:
            # 2 views x 3 videos; tokens [3, N=1, D=1] hold (item, frame)
            self.items = [torch.tensor([[[k * 10.0 + f]] for f in range(3)]) for k in range(6)]

        def __len__(self) -> int:
            return 6

        def __getitem__(self, k: int) -> dict:
            return {"tokens": self.items[k], "grid": torch.tensor([1, 1])}

    bank = Bank()
    real = ControlPairs(bank, "real", 3)
    assert real[4]["tokens"].flatten().tolist() == [40.0, 41.0, 42.0]
    unrelated = ControlPairs(bank, "unrelated", 3)
    # item 4 = view 1, video 1: frame 2 from view 1, video 2 (item 5)
    assert unrelated[4]["tokens"].flatten().tolist() == [40.0, 51.0, 42.0]
    assert unrelated[5]["tokens"].flatten().tolist() == [50.0, 31.0, 52.0]  # wraps to video 0
    shuffled = ControlPairs(bank, "shuffled", 3, torch.full((6, 1, 1), -1.0))
    assert shuffled[0]["tokens"].flatten().tolist() == [0.0, -1.0, 2.0]


@pytest.mark.slow
def test_shortcut_command_runs_six_short_runs(tmp_path: Path, capsys) -> None:
    videos = _videos(tmp_path / "v", count=2, frames=8)
    out = tmp_path / "sc"
    argv = ["analyze", "shortcut", "--backbone", BACKBONE, "--videos", *videos, "--size", "32"]
    argv += ["--views", "2", "--steps", "3", "--batch-size", "2", "--out", str(out)]
    argv += ["--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    result = json.loads((out / "shortcut.json").read_text())
    assert sorted(result["runs"]) == sorted(
        f"{m}-{p}" for m in ("real", "unrelated", "shuffled") for p in ("pea", "no-pea")
    )
    for run in result["runs"].values():
        assert run["step"] == [1, 2, 3]
        assert all(0 <= a <= 1 for a in run["cycle_acc"])
    assert result["samples"] == 4  # 2 views x 2 videos, one bank for all six runs
    assert (out / "view_bank" / "shuffled_z2.pt").is_file()
    assert (out / "shortcut.png").is_file()


def test_token_cache_keeps_fp32_and_bf16_tokens_apart(tmp_path: Path) -> None:
    from videorep.analysis.features import cached_encode_videos
    from videorep.backbones import load_encoder
    from videorep.data.sources import discover_sources

    sources = discover_sources(_videos(tmp_path / "v", count=1, frames=2))
    encoder = load_encoder(BACKBONE).eval()
    kw = {"frames": 2, "resize": 40, "crop": 32, "progress": False}
    fp32, _ = cached_encode_videos(tmp_path / "c", {"b": BACKBONE}, encoder, sources, **kw)
    encoder.autocast_dtype = torch.bfloat16
    bf16, _ = cached_encode_videos(tmp_path / "c", {"b": BACKBONE}, encoder, sources, **kw)
    assert len(list((tmp_path / "c").glob("tokens-*.pt"))) == 2
    assert not torch.equal(fp32[0].tokens, bf16[0].tokens)
