"""End-to-end CLI cases per file type: exit 2 and one ``videorep: error:`` line naming the file
(or warnings naming skipped training files), never a traceback.

The default run calls ``videorep.cli.main`` in-process (no interpreter start-up per case) and
runs three cases as real subprocesses; the ``slow`` run starts a subprocess for every case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from fuzzlib import png_with_size

from videorep.cli import main

TINY = ["--backbone", "random_vit_tiny16"]
EVAL = [*TINY, "--size", "32x48", "--preset", "dino-paper-params"]


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    args = ["train", "cosettle", "--data", str(data), "--out", str(out), *TINY, "--size", "32"]
    args += ["--pool", "1", "--batch-size", "2", "--lr", "1e-3", "--no-progress"]
    return [*args, "--max-steps", "2", *extra]


def corrupt(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def case_image(s, tmp):  # noqa: ANN001, ANN201
    bad = corrupt(Path(shutil.copy(s["jpg"], tmp / "frame.jpg")))
    return ["features", *TINY, "--image", str(bad), "--out", str(tmp / "f.npy")], 2, bad


def case_bomb(s, tmp):  # noqa: ANN001, ANN201
    bad = tmp / "bomb.png"
    bad.write_bytes(png_with_size(100_000, 100_000))
    return ["features", *TINY, "--image", str(bad), "--out", str(tmp / "f.npy")], 2, bad


def case_encoder_safetensors(s, tmp):  # noqa: ANN001, ANN201
    bad = corrupt(Path(shutil.copy(s["encoder_safetensors"], tmp / "enc.safetensors")), 0.9)
    args = ["features", *TINY, "--image", str(s["jpg"]), "--out", str(tmp / "f.npy")]
    return [*args, "--checkpoint", str(bad)], 2, bad


def case_annotation(s, tmp):  # noqa: ANN001, ANN201
    root = Path(shutil.copytree(s["davis"], tmp / "DAVIS"))
    bad = corrupt(root / "Annotations" / "480p" / "squares" / "00001.png")
    return ["eval", "davis", "--root", str(root), *EVAL, "--out", str(tmp / "o")], 2, bad


def case_split(s, tmp):  # noqa: ANN001, ANN201
    root = Path(shutil.copytree(s["davis"], tmp / "DAVIS"))
    bad = root / "ImageSets" / "2017" / "val.txt"
    bad.write_bytes(b"squ\xe9res\n")
    return ["eval", "davis", "--root", str(root), *EVAL, "--out", str(tmp / "o")], 2, bad


def case_projection_config(s, tmp):  # noqa: ANN001, ANN201
    proj = Path(shutil.copytree(s["projection"], tmp / "proj"))
    bad = proj / "config.json"
    bad.write_text('{"format": "videorep-projection-v1", "dim": 100000, "kind": "linear"}')
    args = ["eval", "davis", "--root", str(s["davis"]), *EVAL, "--out", str(tmp / "o")]
    return [*args, "--projection", str(proj)], 2, proj


def case_projection_weights(s, tmp):  # noqa: ANN001, ANN201
    proj = Path(shutil.copytree(s["projection"], tmp / "proj"))
    bad = corrupt(proj / "projection.safetensors")
    args = ["eval", "davis", "--root", str(s["davis"]), *EVAL, "--out", str(tmp / "o")]
    return [*args, "--projection", str(proj)], 2, bad


def case_vip_list(s, tmp):  # noqa: ANN001, ANN201
    root = Path(shutil.copytree(s["vip"], tmp / "VIP"))
    bad = root / "lists" / "val_videos.txt"
    bad.write_bytes(s["png"].read_bytes())  # a PNG behind the .txt name
    return ["eval", "vip", "--root", str(root), *EVAL, "--out", str(tmp / "o")], 2, bad


def case_mat(s, tmp):  # noqa: ANN001, ANN201
    root = Path(shutil.copytree(s["jhmdb"], tmp / "JHMDB"))
    bad = corrupt(root / "joint_positions" / "wave" / "a" / "joint_positions.mat")
    return ["eval", "jhmdb", "--root", str(root), *EVAL, "--out", str(tmp / "o")], 2, bad


def case_checkpoint(s, tmp):  # noqa: ANN001, ANN201
    run = Path(shutil.copytree(s["run"], tmp / "run"))
    bad = corrupt(run / "checkpoint.pt")
    return train_args(s["frames"], run, "--view-bank", "2", "--resume"), 2, bad


def case_view_bank(s, tmp):  # noqa: ANN001, ANN201
    run = Path(shutil.copytree(s["run"], tmp / "run"))
    (run / "checkpoint.pt").unlink()
    bad = corrupt(run / "view_bank" / "tokens.f16")
    return train_args(s["frames"], run, "--view-bank", "2"), 2, bad


def case_only_bad_video(s, tmp):  # noqa: ANN001, ANN201
    bad = corrupt(Path(shutil.copy(s["mp4"], tmp / "clip.mp4")))
    return train_args(bad, tmp / "run"), 2, bad


def case_bad_training_files_skipped(s, tmp):  # noqa: ANN001, ANN201
    data = Path(shutil.copytree(s["frames"], tmp / "frames"))
    bad_video = corrupt(Path(shutil.copy(s["webm"], data / "broken.webm")))
    bad_list = data / "more.txt"
    bad_list.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    listing = data / "all.txt"
    listing.write_text("video0\nvideo1\nbroken.webm\nmore.txt\nmissing_folder\n")
    return train_args(listing, tmp / "run", "--max-steps", "1"), 0, [bad_video, bad_list]


CASES = {
    "jpg": case_image,
    "png (bomb)": case_bomb,
    "safetensors (encoder)": case_encoder_safetensors,
    "safetensors (projection)": case_projection_weights,
    "config.json (projection)": case_projection_config,
    "annotation png": case_annotation,
    "split .txt (DAVIS)": case_split,
    "list .txt (VIP)": case_vip_list,
    "joints .mat": case_mat,
    "checkpoint.pt": case_checkpoint,
    "view bank": case_view_bank,
    "mp4 (only source)": case_only_bad_video,
    "training files skipped": case_bad_training_files_skipped,
}
SUBPROCESS_FAST = ("png (bomb)", "checkpoint.pt", "training files skipped")


def check(code: int, err: str, expect: int, bad) -> None:  # noqa: ANN001
    bads = bad if isinstance(bad, list) else [bad]
    assert "Traceback" not in err, err
    assert code == expect, err
    lines = [line for line in err.splitlines() if line.strip()]
    if expect == 2:
        errors = [line for line in lines if line.startswith("videorep: error: ")]
        assert len(errors) == 1 and errors[0] == lines[-1], err
        assert str(bads[0]) in errors[0], err
    for b in bads if expect == 0 else []:
        assert any(str(b) in line and "skipped" in line for line in lines), (b, err)


def run_subprocess(args: list[str]) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "videorep.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_in_process(name, seeds, tmp_path, capsys) -> None:
    args, expect, bad = CASES[name](seeds, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(args)
    shown = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    err = shown + capsys.readouterr().err  # warnings come before the final error line
    check(code, err, expect, bad)


@pytest.mark.parametrize("name", SUBPROCESS_FAST)
def test_cli_subprocess(name, seeds, tmp_path) -> None:
    args, expect, bad = CASES[name](seeds, tmp_path)
    check(*run_subprocess(args), expect, bad)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(CASES) - set(SUBPROCESS_FAST)))
def test_cli_subprocess_slow(name, seeds, tmp_path) -> None:
    args, expect, bad = CASES[name](seeds, tmp_path)
    check(*run_subprocess(args), expect, bad)
