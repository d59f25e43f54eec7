"""Rows of the bad-input matrix (README "Bad input") not covered by tests/data, tests/train and
tests/eval: mismatched checkpoints and projections, inf in the loss, a full disk during
training, and Ctrl-C on a real training process. Each test checks the message the user sees."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from videorep.cli import main
from videorep.errors import VideorepError
from videorep.methods.cosettle.heads import ProjectionHead, load_projection, save_projection
from videorep.train import checkpoint as ckpt_module

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def cosettle_args(frames: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "cosettle",
        "--data",
        str(frames),
        "--out",
        str(out),
        "--backbone",
        "random_vit_tiny16",
        "--size",
        "32",
        "--pool",
        "1",
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
        "--no-progress",
        *extra,
    ]


def last_line(err: str) -> str:
    return [line for line in err.splitlines() if line.strip()][-1]


@pytest.fixture
def trained(frame_folders, tmp_path, capsys) -> Path:
    """A Co-Settle run of 2 steps on random_vit_tiny16 (192-d)."""
    out = tmp_path / "run"
    assert main(cosettle_args(frame_folders, out, "--max-steps", "2")) == 0
    capsys.readouterr()
    return out


def test_resume_with_another_backbone_is_refused(trained, frame_folders, capsys) -> None:
    args = cosettle_args(frame_folders, trained, "--max-steps", "4", "--resume")
    args[args.index("random_vit_tiny16")] = "dino_vits16"
    assert main([*args, "--checkpoint", "random"]) == 2
    line = last_line(capsys.readouterr().err)
    assert line.startswith(f"videorep: error: {trained / 'checkpoint.pt'}: was written by a run")
    assert "'backbone': ('random_vit_tiny16', 'dino_vits16')" in line
    assert "resume with the same settings or use a new --out" in line
    assert torch.load(trained / "checkpoint.pt", weights_only=False)["step"] == 2  # untouched


def test_resume_with_another_head_kind_is_refused(trained, frame_folders, capsys) -> None:
    args = cosettle_args(frame_folders, trained, "--max-steps", "4", "--resume", "--head", "mlp2")
    assert main(args) == 2
    assert "'head': ('linear', 'mlp2')" in last_line(capsys.readouterr().err)


def test_checkpoint_with_a_different_head_width_is_refused(trained, frame_folders, capsys) -> None:
    """A checkpoint without the settings record (hand-made, older) whose head is 384 wide."""
    path = trained / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=False)
    del ckpt["config"]["method_config"]
    ckpt["method_state"] = {f"head.{k}": v for k, v in ProjectionHead(384).state_dict().items()}
    torch.save(ckpt, path)
    assert main(cosettle_args(frame_folders, trained, "--max-steps", "2", "--resume")) == 2
    line = last_line(capsys.readouterr().err)
    assert line == (
        f"videorep: error: {path}: does not fit this model: shapes (checkpoint vs model) "
        "differ: head.net.0.weight [384, 384] vs [192, 192]; head.net.0.bias [384] vs [192]; "
        "head.net.2.weight [384] vs [192] ... - a checkpoint of another encoder or head width? "
        "Resume with its settings or use a new --out"
    )


def test_bodvcl_checkpoint_from_another_encoder_is_refused(frame_folders, tmp_path, capsys) -> None:
    out = tmp_path / "bod"
    args = ["train", "bodvcl", "--data", str(frame_folders), "--out", str(out)]
    args += ["--framework", "moco", "--clip-len", "4", "--stride", "1", "--image-size", "32"]
    args += ["--koopman-dim", "8", "--proj-hidden-dim", "16", "--queue-size", "16"]
    args += ["--batch-size", "4", "--no-progress", "--bilevel", "none", "--no-decoupled"]
    assert main([*args, "--encoder", "tiny3d", "--max-steps", "1"]) == 0
    assert main([*args, "--encoder", "vit_tiny", "--max-steps", "2", "--resume"]) == 2
    line = last_line(capsys.readouterr().err)
    assert "was written by a run with different settings" in line
    assert "'encoder': ('tiny3d', 'vit_tiny')" in line


def test_projection_of_another_width_given_to_evaluation(tmp_path) -> None:
    folder = save_projection(ProjectionHead(384), tmp_path / "proj", extra={"backbone": "vits"})
    with pytest.raises(VideorepError) as err:
        load_projection(folder, expect_dim=768)
    assert str(err.value) == (
        f"{folder}: projection width 384 (trained on vits) does not match the encoder width 768"
    )
    assert load_projection(folder, expect_dim=384).dim == 384


def test_inf_loss_stops_and_keeps_the_last_good_checkpoint(frame_folders, tmp_path, monkeypatch):
    from videorep.methods.cosettle import CoSettle

    original = CoSettle.training_step
    calls = {"n": 0}

    def exploding(self, batch):  # noqa: ANN001, ANN202
        calls["n"] += 1
        out = original(self, batch)
        if calls["n"] >= 3:
            out["loss"] = out["loss"] * float("inf")
        return out

    monkeypatch.setattr(CoSettle, "training_step", exploding)
    out = tmp_path / "inf"
    with pytest.raises(VideorepError) as err:
        from videorep.cli import build_parser
        from videorep.methods import load_method
        from videorep.methods.commands import resolve_configs
        from videorep.methods.cosettle.plugin import train_cosettle

        args = build_parser().parse_args(cosettle_args(frame_folders, out, "--save-every", "1"))
        method_config, data, train_config = resolve_configs(load_method("cosettle"), args)
        train_cosettle(method_config, data, train_config)
    assert str(err.value).startswith("training stopped: non-finite values {'loss': inf} at step 3")
    assert "the last good checkpoint" in str(err.value)
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 2
    assert all(torch.isfinite(v).all() for v in saved["method_state"].values())


def test_full_disk_during_training_keeps_the_last_checkpoint(
    frame_folders, tmp_path, monkeypatch, capsys
) -> None:
    real_save = torch.save
    calls = {"n": 0}

    def filling_disk(obj, fh):  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] >= 2:  # the second checkpoint finds the disk full
            fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, fh)

    monkeypatch.setattr(ckpt_module.torch, "save", filling_disk)
    out = tmp_path / "full"
    args = cosettle_args(frame_folders, out, "--save-every", "1", "--max-steps", "4")
    assert main(args) == 2
    line = last_line(capsys.readouterr().err)
    assert line == (
        f"videorep: error: could not write checkpoint {out / 'checkpoint.pt'} (No space left on "
        "device); the previous checkpoint is intact"
    )
    monkeypatch.undo()
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 1
    assert not list(out.glob(".*.tmp"))


def test_ctrl_c_saves_exits_130_and_resume_continues(frame_folders, tmp_path, capsys) -> None:
    out = tmp_path / "sigint"
    steps = 12
    args = cosettle_args(frame_folders, out, "--max-steps", str(steps), "--save-every", "1000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "videorep.cli", *args],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = out / "log.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if log.is_file() and log.read_text().count("\n") >= 2:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    saved = torch.load(out / "checkpoint.pt", weights_only=False)["step"]
    assert 2 <= saved < steps
    assert last_line(err) == (
        f"videorep: interrupted at step {saved}/{steps}; checkpoint saved to "
        f"{out / 'checkpoint.pt'} (continue with --resume)"
    )
    assert "stopping after this step" in err  # the immediate notice
    assert main([*args, "--resume"]) == 0
    capsys.readouterr()
    logged = [json.loads(x)["step"] for x in log.read_text().splitlines()]
    assert logged == list(range(1, steps + 1))


# ------------------------------------------------------------------------------------------------
# Security / width block (issue 12, part 2): a run folder cannot execute code on --resume, and a
# projection of the wrong width on the evaluation CLI is one error line, not a torch traceback.
# ------------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this object creates ``marker`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_checkpoint_in_the_run_folder_never_runs(frame_folders, tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "payload-ran"
    out.mkdir()
    torch.save({"format": ckpt_module.FORMAT, "step": 1, "x": _Payload(marker)}, out / "ckpt.tmp")
    os.replace(out / "ckpt.tmp", out / "checkpoint.pt")
    assert main(cosettle_args(frame_folders, out, "--max-steps", "2", "--resume")) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert last_line(err).startswith(
        f"videorep: error: {out / 'checkpoint.pt'}: not a videorep training checkpoint (it holds "
        "Python objects other than tensors and plain values, which are never unpickled"
    )
    assert "Traceback" not in err


def _tiny_davis(root: Path, n_frames: int = 3) -> Path:
    from PIL import Image

    img_dir = root / "JPEGImages" / "480p" / "seq"
    ann_dir = root / "Annotations" / "480p" / "seq"
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    for t in range(n_frames):
        mask = torch.zeros(48, 64, dtype=torch.uint8)
        mask[10:30, 8 + 4 * t : 28 + 4 * t] = 255
        rgb = torch.stack([mask, 255 - mask, mask // 2], dim=-1).numpy()
        Image.fromarray(rgb).save(img_dir / f"{t:05d}.jpg", quality=98)
        Image.fromarray(mask.numpy(), mode="L").save(ann_dir / f"{t:05d}.png")
    split = root / "ImageSets" / "2016" / "val.txt"
    split.parent.mkdir(parents=True)
    split.write_text("seq\n")
    return root


def test_projection_of_another_width_on_the_eval_cli_is_one_error(tmp_path, capsys) -> None:
    root = _tiny_davis(tmp_path / "davis")
    folder = save_projection(ProjectionHead(384), tmp_path / "proj", extra={"backbone": "vits14"})
    args = ["eval", "davis", "--root", str(root), "--year", "2016", "--backbone"]
    args += ["random_vit_tiny16", "--size", "48", "--out", str(tmp_path / "out")]
    assert main([*args, "--projection", str(folder)]) == 2
    err = capsys.readouterr().err
    assert last_line(err) == (
        f"videorep: error: {folder}: projection width 384 (trained on vits14) does not match "
        "the encoder width 192"
    )
    assert "Traceback" not in err and "mat1 and mat2" not in err


def test_projection_of_another_width_fails_in_forward_on_every_path(tmp_path) -> None:
    """A head loaded without ``expect_dim`` (API use) still refuses tokens of another width."""
    folder = save_projection(ProjectionHead(384), tmp_path / "proj", extra={"backbone": "vits14"})
    head = load_projection(folder)
    assert head(torch.zeros(1, 4, 384)).shape == (1, 4, 384)
    with pytest.raises(VideorepError) as err:
        head(torch.zeros(1, 4, 192))
    assert str(err.value) == (
        f"{folder} (trained on vits14): projection width 384 does not match the encoder width "
        "192 (a head trained on another backbone?)"
    )


def test_resume_with_other_data_settings_or_dtype_is_refused(trained, frame_folders, capsys):
    """Resume compares the whole config: data settings too, not only the method's."""
    for extra, named in [
        (["--fps", "4"], "'data.fps': (2.0, 4.0)"),
        (["--size", "48"], "'data.size': (32, 48)"),
        (["--view-bank", "2"], "'data.view_bank': (0, 2)"),
        (["--encoder-dtype", "bf16"], "'encoder_dtype': ('auto', 'bf16')"),
        (["--weight-decay", "0.1"], "'train.weight_decay': (0.05, 0.1)"),
    ]:
        args = cosettle_args(frame_folders, trained, "--max-steps", "2", "--resume", *extra)
        assert main(args) == 2
        line = last_line(capsys.readouterr().err)
        assert f"{trained / 'checkpoint.pt'}: was written by a run with different settings" in line
        assert named in line and "use a new --out" in line
    assert not (trained / "view_bank").exists()  # refused before anything was built
    assert torch.load(trained / "checkpoint.pt", weights_only=False)["step"] == 2
    # the run length is compared too: the learning-rate schedule depends on it
    assert main(cosettle_args(frame_folders, trained, "--max-steps", "3", "--resume")) == 2
    assert "'train.max_steps': (2, 3)" in last_line(capsys.readouterr().err)
    # settings that only control the run (where, how often, display) do not block a resume
    args = cosettle_args(
        frame_folders, trained, "--max-steps", "2", "--resume", "--save-every", "7"
    )
    assert main(args) == 0
    assert torch.load(trained / "checkpoint.pt", weights_only=False)["step"] == 2


def test_resume_of_bodvcl_with_another_dtype_is_refused(frame_folders, tmp_path, capsys) -> None:
    out = tmp_path / "bod"
    args = ["train", "bodvcl", "--data", str(frame_folders), "--out", str(out)]
    args += ["--framework", "simclr", "--encoder", "tiny3d", "--clip-len", "4", "--stride", "1"]
    args += ["--image-size", "32", "--koopman-dim", "8", "--proj-hidden-dim", "16"]
    args += ["--batch-size", "4", "--no-progress", "--bilevel", "none", "--no-decoupled"]
    assert main([*args, "--max-steps", "1"]) == 0
    assert main([*args, "--max-steps", "2", "--resume", "--dtype", "float64"]) == 2
    assert "'dtype': ('float32', 'float64')" in last_line(capsys.readouterr().err)
    assert main([*args, "--max-steps", "2", "--resume", "--fps", "1"]) == 2
    assert "'data.fps': (2.0, 1.0)" in last_line(capsys.readouterr().err)
