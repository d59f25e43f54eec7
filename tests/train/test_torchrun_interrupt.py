"""Ctrl-C under ``torchrun``: one clear line, a checkpoint that loads, and an exact ``--resume``.

A 2-process Co-Settle run (tiny generated frames, random tiny ViT) gets SIGINT on the launcher's
process group - what a Ctrl-C in the terminal does: ``torchrun`` starts its workers in sessions of
their own, so the signal reaches the agent, which forwards it to every worker. The run is
interrupted twice (under plain ``torchrun``, then under ``python -m videorep.train.launch``),
resumed to the end, and must end with the projection of an uninterrupted 2-process run byte for
byte, each step logged once with the same losses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from resume_checks import assert_same_run

from videorep.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # four 2-process launches, ~80 s on 2 busy cores

STEPS = 10
VENV_BIN = Path(sys.executable).parent
TORCHRUN = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc-per-node", "2"]
LAUNCH = [sys.executable, "-m", "videorep.train.launch", "--standalone", "--nproc-per-node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def train_args(frames: Path, out: Path, resume: bool = False) -> list[str]:
    args = ["-m", "videorep.cli", "train", "cosettle", "--data", str(frames), "--out", str(out)]
    args += ["--backbone", "random_vit_tiny16", "--size", "32", "--pool", "1", "--batch-size", "2"]
    args += ["--lr", "1e-3", "--max-steps", str(STEPS), "--save-every", "1000"]
    args += ["--warmup-epochs", "0.5", "--no-progress"]
    return args + (["--resume"] if resume else [])


def log_lines(out: Path) -> int:
    try:
        return (out / "log.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def interrupt(cmd: list[str], out: Path, after: int) -> tuple[int, str]:
    """Run ``cmd`` in a session of its own; SIGINT its process group once the log has ``after``
    lines (like a Ctrl-C in a terminal); ``(exit status, stderr)``."""
    proc = subprocess.Popen(
        cmd,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 150
        while proc.poll() is None and time.monotonic() < deadline:
            if log_lines(out) >= after:
                os.killpg(proc.pid, signal.SIGINT)
                break
            time.sleep(0.005)
        _, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err


def check_interrupted(err: str, out: Path, after: int) -> int:
    """The workers said it once; the checkpoint loads and holds the step they named."""
    ckpt = load_checkpoint(out / "checkpoint.pt")
    step = int(ckpt["step"])
    assert after <= step < STEPS, (step, err[-3000:])
    assert ckpt["method_state"] and ckpt["optimizer"]["state"]
    ours = [line for line in err.splitlines() if line.startswith("videorep:")]
    assert ours == [
        "videorep: stopping after this step (Ctrl-C again to abort)",
        f"videorep: interrupted at step {step}/{STEPS}; checkpoint saved to "
        f"{out / 'checkpoint.pt'} (continue with --resume)",
    ], err[-3000:]
    assert "Error" not in err.replace("SignalException", ""), err[-3000:]  # no worker failed
    assert log_lines(out) == step
    assert not list(out.glob(".*.tmp"))
    return step


def test_ctrl_c_under_torchrun_saves_once_and_resume_is_exact(frame_folders, tmp_path) -> None:
    reference = tmp_path / "reference"
    done = subprocess.run(
        [*TORCHRUN, *train_args(frame_folders, reference)], env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "interrupted"
    # 1. plain torchrun: the workers stop cleanly; torchrun itself re-raises its SignalException
    #    (its own single traceback, exit status 1), which videorep cannot change from inside.
    code, err = interrupt([*TORCHRUN, *train_args(frame_folders, out)], out, after=2)
    first = check_interrupted(err, out, after=2)
    assert code == 1 and err.count("Traceback") == 1, err[-3000:]
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("torch.distributed.elastic.multiprocessing.api.SignalException")
    # 2. the videorep launcher (torchrun's own code): no traceback at all, exit status 130.
    code, err = interrupt(
        [*LAUNCH, *train_args(frame_folders, out, resume=True)], out, after=first + 2
    )
    second = check_interrupted(err, out, after=first + 2)
    assert code == 130 and "Traceback" not in err, err[-3000:]
    assert err.rstrip().splitlines()[-1].startswith("videorep: interrupted at step")

    done = subprocess.run(
        [*TORCHRUN, *train_args(frame_folders, out, resume=True)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"interrupted at steps {first} and {second} of {STEPS}")
    assert_same_run(reference, out, STEPS)
    final = torch.load(out / "checkpoint.pt", weights_only=False)
    assert int(final["step"]) == STEPS
