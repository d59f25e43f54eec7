"""SIGKILL at random points, ``--resume``, and the result is bit-identical to an uninterrupted run.

``videorep train cosettle`` runs as a real subprocess with a checkpoint after every step; it is
killed with SIGKILL (no handler runs) as soon as ``log.jsonl`` holds a random number of lines -
which can land mid-step, mid-checkpoint-write or between the log line and the checkpoint - and
resumed, three times in a row, then resumed to the end. The exported projection must equal the
uninterrupted run's byte for byte, and the log must hold each step exactly once with the same
losses.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from resume_checks import assert_same_run

STEPS = 24


def command(frames: Path, out: Path, resume: bool = False) -> list[str]:
    args = [sys.executable, "-m", "videorep.cli", "train", "cosettle", "--data", str(frames)]
    args += ["--out", str(out), "--backbone", "random_vit_tiny16", "--size", "32", "--pool", "1"]
    args += ["--batch-size", "4", "--lr", "1e-3", "--max-steps", str(STEPS), "--save-every", "1"]
    args += ["--warmup-epochs", "0.5", "--no-progress"]
    return args + (["--resume"] if resume else [])


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def log_lines(out: Path) -> int:
    try:
        return (out / "log.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def run_and_kill(cmd: list[str], out: Path, after: int) -> bool:
    """Start ``cmd``, SIGKILL it once the log has ``after`` lines; False if it finished first."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if log_lines(out) >= after:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return False


def test_sigkill_at_random_steps_then_resume_is_bit_identical(frame_folders, tmp_path) -> None:
    reference = tmp_path / "reference"
    done = subprocess.run(command(frame_folders, reference), env=ENV, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    out = tmp_path / "killed"
    rng = random.Random(int(os.environ.get("VIDEOREP_KILL_SEED", "6")))
    kills = []
    target = 0
    for attempt in range(3):
        target = rng.randint(target + 1, target + STEPS // 4)  # a later line each time
        killed = run_and_kill(command(frame_folders, out, resume=attempt > 0), out, target)
        assert killed, f"run finished before the kill at log line {target}"
        ckpt = torch.load(out / "checkpoint.pt", weights_only=False)  # never corrupted
        kills.append((target, int(ckpt["step"])))
        assert 0 <= target - int(ckpt["step"]) <= 2, kills  # checkpoint of the last step or two
    done = subprocess.run(command(frame_folders, out, resume=True), env=ENV, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    print("kills (log line, checkpoint step):", kills)
    assert not list(out.glob(".*.tmp"))  # temp files of killed writes are cleaned up

    assert_same_run(reference, out, STEPS)
